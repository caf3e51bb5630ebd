"""ltlab.batch: validation before anything runs, resumable parallel sweeps, failures reported, tables."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltlab import batch
from ltlab.launch.cli import main
from ltlab.launch.sweep.options import split_values

ROOT = Path(__file__).resolve().parent.parent
TRAIN_NB = ROOT / "notebooks" / "01_train.ipynb"
BASE = {"dataset": "digits_lt", "epochs": 2, "batch_size": 128, "progress": False, "device": "cpu"}


def test_expand_order_and_precedence(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("loss: focal\nlr: 0.2\ndescription: a test preset\n")
    combos = batch.expand([preset, {"loss": "ce"}], {"lr": [0.01, 0.02]}, {"epochs": 3, "lr": 9.0}, seeds=[0, 1])
    assert len(combos) == 2 * 2 * 2
    assert {"epochs": 3, "lr": 0.01, "loss": "focal", "seed": 0}.items() <= combos[0].items()  # grid > preset > base
    assert "description" not in combos[0]
    assert combos[-1] == {"epochs": 3, "lr": 0.02, "loss": "ce", "seed": 1}
    assert [c["seed"] for c in combos[:2]] == [0, 1]
    with pytest.raises(ValueError, match="list of values"):
        batch.expand(grid={"lr": 0.1})


def test_run_name_is_deterministic_and_ignores_execution_fields():
    a = batch.run_name({"loss": "ce", "seed": 1, "lr": 0.1})
    assert a == batch.run_name({"lr": 0.1, "seed": 1, "loss": "ce", "device": "cpu", "progress": False,
                                "epochs_per_call": 1, "preset": "x.yaml"})
    assert a.startswith("digits_lt_ce_if100_s1_")
    assert a != batch.run_name({"loss": "ce", "seed": 1, "lr": 0.2})


def test_split_values_keeps_lists():
    assert split_values("ce,focal") == ["ce", "focal"]
    assert split_values("[1,2],[3],None,0.5") == [[1, 2], [3], None, 0.5]


@pytest.mark.parametrize("grid,match", [({"lossx": ["ce"]}, "unknown parameter"),
                                        ({"loss": ["ce", "nope"]}, "combination 1.*unknown loss")])
def test_invalid_grid_fails_before_any_run(tmp_path, grid, match):
    out = tmp_path / "runs"
    with pytest.raises(ValueError, match=match) as err:
        batch.sweep(TRAIN_NB, grid=grid, base_params=BASE, out_root=out, parallel=2)
    assert "nothing was run" in str(err.value)
    assert not out.exists()


def test_cli_reports_invalid_grid(tmp_path, capsys):
    assert main(["sweep", "--grid", "epoch=1,2", "--out-root", str(tmp_path / "o")]) == 2
    assert "unknown parameter" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_summarise_and_export(tmp_path):
    df = pd.DataFrame({"loss": ["ce"] * 3 + ["bs"] * 3, "seed": [0, 1, 2] * 2, "lr": [0.1] * 6,
                       "status": ["done", "skipped", "resumed", "done", "done", "failed"],
                       "overall": [0.1, 0.2, 0.4, 0.5, 0.7, np.nan], "many": [0.9] * 6, "medium": [0.5] * 6,
                       "few": [0.0, 0.1, 0.2, 0.3, 0.3, np.nan]})
    s = batch.summarise(df)  # by: the varying parameter columns except seed -> loss
    assert list(s["loss"]) == ["bs", "ce"] and list(s["n"]) == [2, 3]
    ce = s[s.loss == "ce"].iloc[0]
    assert ce.overall_mean == pytest.approx(0.7 / 3)
    m = 0.7 / 3
    assert ce.overall_std == pytest.approx(np.sqrt(((0.1 - m) ** 2 + (0.2 - m) ** 2 + (0.4 - m) ** 2) / 2))
    assert s[s.loss == "bs"].iloc[0].few_std == 0.0
    assert batch.format_table(s).loc[1, "overall"] == "23.3 ± 15.3"
    paths = batch.export_tables(s, tmp_path / "tab")
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), s)  # to 6 decimals
    tex = paths["tex"].read_text()
    assert "\\begin{tabular}" in tex and "23.3 $\\pm$ 15.3" in tex
    with pytest.raises(ValueError, match="unknown column"):
        batch.summarise(df, by=["nope"])


def test_progress_lines_count_and_estimate():
    """Issue 29: one line per finished run with status, varying parameters, seconds, the four numbers, elapsed
    and the time left (from the mean so far)."""
    import io

    from ltlab.launch.sweep.progress import Progress, clock
    buf = io.StringIO()
    p = Progress(5, 3, ["loss", "seed"], parallel=2, stream=buf)
    p.start(2, "runs/x")
    p.t0 -= 30.0  # 30 s in when the first run ends
    p.done({"run_id": "a", "row": {"loss": "ce", "seed": 0, "lr": 0.1}}, {"status": "done", "seconds": 29.6},
           {"overall": 0.5, "many": 0.75, "medium": 0.5, "few": 0.125, "epochs_done": 3})
    p.done({"run_id": "b", "row": {"loss": "gcl", "seed": 0}}, {"status": "failed", "error": "ValueError: bad"}, {})
    lines = buf.getvalue().splitlines()
    assert lines[0] == "sweep: 5 run(s), 2 already finished (skipped); running 3, 2 at a time into runs/x"
    assert lines[1] == ("[1/3] done        loss=ce seed=0, 30 s  overall 50.0  many 75.0  medium 50.0  few 12.5  "
                        "(elapsed 0:30, about 0:30 left)")  # 2 runs left at 29.6 s, 2 at a time
    assert lines[2].startswith("[2/3] failed      loss=gcl seed=0  (ValueError: bad)  (elapsed 0:30, about 0:30 left)")
    assert clock(3725) == "1:02:05" and clock(59.6) == "1:00"
    quiet = Progress(1, 1, [], stream=buf, enabled=False)
    quiet.start(0, "x")
    assert buf.getvalue().count("\n") == 3


def test_cli_sweep_prints_the_summary_and_where_the_tables_went(tmp_path, monkeypatch, capsys):
    """Issue 29: the command line ends with mean ± std per setting (not a per-run table), then the table paths;
    the CSV numbers are rounded (0.755, not 0.7549999999999999)."""
    import ltlab.launch.sweep.run as sweep_run
    rows = [{"run_id": f"r{i}", "loss": loss, "seed": seed, "status": "done", "overall": o, "many": 0.9,
             "medium": 0.6, "few": 0.3, "epochs_done": 3, "seconds": 1.0, "notebook": "", "error": "",
             "run_dir": str(tmp_path / "out" / f"r{i}")}
            for i, (loss, seed, o) in enumerate([("ce", 0, 0.7549999999999999), ("ce", 1, 0.755), ("ldam", 0, 0.8),
                                                  ("ldam", 1, 0.7)])]
    monkeypatch.setattr(sweep_run, "sweep", lambda *a, **k: pd.DataFrame(rows))
    assert main(["sweep", "--grid", "loss=ce,ldam", "--seeds", "0,1", "--out-root", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "mean ± std over seeds" in out and "75.5 ± 0.0" in out and "75.0 ± 7.1" in out
    assert "run_id" not in out and "r3" not in out  # no per-run table
    stem = tmp_path / "out" / "results"
    assert f"tables: {stem}.csv and {stem}.tex (the summary), {stem}_runs.csv (one row per run)" in out
    assert "0.755," in (tmp_path / "out" / "results.csv").read_text()
    assert "0.7549999999999999" not in (tmp_path / "out" / "results_runs.csv").read_text()


@pytest.mark.subprocess
@pytest.mark.slow
def test_interrupted_sweep_completes_only_missing_runs_and_reports_failures(tmp_path, capsys):
    out = tmp_path / "runs"
    # first attempt: seed 0 finishes, seed 1 is cut off after one of its two epochs (an interruption)
    first = batch.sweep(TRAIN_NB, presets=[{"seed": 0}, {"seed": 1, "epochs_per_call": 1}], base_params=BASE,
                        parallel=2, out_root=out)
    assert list(first.status) == ["done", "incomplete"]
    assert list(first.epochs_done) == [2, 1]
    done_dir, cut_dir = Path(first.run_dir[0]), Path(first.run_dir[1])
    stamp = {p: p.stat().st_mtime_ns for p in (done_dir / "01_train.ipynb", done_dir / "checkpoint.pt")}
    epoch0 = pd.read_csv(cut_dir / "metrics.csv").iloc[0]

    # second attempt: same runs plus one that fails while it trains (missing data stops a sweep before any run
    # starts, tests/test_sweeps.py): an lr that sends the loss to inf in the first steps
    bad = {"seed": 2, "lr": 1e30}
    capsys.readouterr()
    second = batch.sweep(TRAIN_NB, presets=[{"seed": 0}, {"seed": 1}, bad], base_params=BASE, parallel=2, out_root=out)
    said = capsys.readouterr().out.splitlines()  # issue 29: the sweep talks, one line per finished run
    assert said[0] == f"sweep: 3 run(s), 1 already finished (skipped); running 2, 2 at a time into {out}"
    lines = sorted(said[1:3], key=lambda ln: "resumed" in ln)  # the failed run's line first, whichever ended first
    assert re.match(r"\[\d/2\] failed +seed=2 lr=1e\+30, \d+ s  \(.*loss became NaN/inf.*\)  \(elapsed \d:\d\d", lines[0])
    assert re.match(r"\[\d/2\] resumed +seed=1, \d+ s  overall \d+\.\d  many \d+\.\d  medium \d+\.\d  few "
                    r"\d+\.\d  \(elapsed \d:\d\d", lines[1]), lines[1]
    assert "left)" in said[1] and "left)" not in said[2]  # the first to finish estimates the time left
    assert list(second.run_id[:2]) == list(first.run_id)  # the same directories are found again
    assert list(second.status) == ["skipped", "resumed", "failed"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())  # the finished run was not executed again
    resumed = pd.read_csv(cut_dir / "metrics.csv")
    assert list(resumed.epoch) == [0, 1] and resumed.iloc[0]["seconds"] == epoch0["seconds"]  # epoch 0 kept
    assert second.overall[:2].notna().all() and list(second.epochs_done[:2]) == [2, 2]
    fail = second.iloc[2]
    assert "loss became NaN/inf" in fail.error and Path(fail.notebook).exists()
    assert "FloatingPointError" in Path(fail.notebook).read_text()  # the executed notebook shows the traceback
    assert np.isnan(fail.overall)
