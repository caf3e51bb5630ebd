"""What a notebook user sees: compact RunConfig / Run displays, the progress bar a kernel gets, and a missing run
reported as a short message that lists the runs there are (issue 17)."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import ltlab
from ltlab import progress
from ltlab.config import RECIPE_FIELDS
from ltlab.runs import Run, RunNotFoundError, load_run, load_runs

NB = Path(__file__).resolve().parent.parent / "notebooks"


def _rows(markup: str) -> list[list[str]]:
    """The cell texts of each table row of an HTML fragment."""
    return [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", markup, re.S)]


def test_runconfig_repr_shows_what_differs_and_html_the_recipe_too():
    c = ltlab.RunConfig(loss="ldam", epochs=12, lr=0.1, loss_params={"s": 30.0})
    assert repr(c) == "RunConfig(loss='ldam', loss_params={'s': 30.0}, epochs=12, lr=0.1)"
    assert eval(repr(c), {"RunConfig": ltlab.RunConfig}) == c  # the short repr still rebuilds the config
    assert repr(ltlab.RunConfig()) == "RunConfig()"
    rows = _rows(c._repr_html_())
    assert rows[0] == ["", "value", "default"]
    recipe = {r[0]: r[1:] for r in rows[1:]}
    assert [r[0] for r in rows[1:]] == [*RECIPE_FIELDS, "loss_params"]  # the recipe always, then other changes
    assert recipe["loss"] == ["'ldam'", "'ce'"] and recipe["epochs"] == ["12", "30"] and recipe["lr"] == ["0.1", "0.05"]
    assert recipe["loss_params"] == ["{'s': 30.0}", "{}"] and recipe["batch_size"] == ["64", ""]  # default: blank
    assert "4 of" in c._repr_html_()
    first = _rows(ltlab.RunConfig()._repr_html_())  # the 01 notebook's own defaults: the recipe, nothing marked
    assert [r[0] for r in first[1:]] == list(RECIPE_FIELDS) and all(r[2] == "" for r in first[1:])


def _fake_run(tmp_path: Path, rows: list[dict]) -> Run:
    metrics = pd.DataFrame(rows, columns=["epoch", "lr", "train_loss", "acc", "acc_many", "acc_medium", "acc_few",
                                          "seconds"])
    return Run(dir=tmp_path / "r<1>", config={"loss": "ce", "dataset": "digits_lt", "imbalance_factor": 100.0,
                                              "model": "convnet_small", "epochs": 5}, metrics=metrics)


def test_run_html_is_its_summary(tmp_path):
    run = _fake_run(tmp_path, [{"epoch": 2, "lr": 0.1, "train_loss": 1.0, "acc": 0.5, "acc_many": 0.9,
                                "acc_medium": 0.45, "acc_few": float("nan"), "seconds": 1.0}])
    markup = run._repr_html_()
    assert "r&lt;1&gt;" in markup and "ce on digits_lt (IF 100, convnet_small), epoch 3 of 5" in markup
    assert _rows(markup) == [["overall", "many", "medium", "few"], ["0.5000", "0.9000", "0.4500", "–"]]
    assert "nothing evaluated yet" in _fake_run(tmp_path, [])._repr_html_()
    assert repr(run) == f"Run({str(run.dir)!r}, epochs=1)"


class _Kernel:
    def __init__(self, allow_stdin: bool):
        self.parent = {"content": {"allow_stdin": allow_stdin}}

    def get_parent(self) -> dict:
        return self.parent


def test_progress_bar_follows_the_front_end(monkeypatch):
    assert not progress.live_frontend()  # pytest: no kernel
    bar = progress.progress_bar(range(3), enabled=True)
    assert type(bar).__module__ == "tqdm.std" and bar.mininterval == 0.1 and not bar.disable
    bar.close()
    assert progress.progress_bar(range(3), enabled=False).disable
    monkeypatch.setattr(progress, "_kernel", lambda: _Kernel(allow_stdin=False))  # papermill / nbconvert
    bar = progress.progress_bar(range(3), enabled=True)
    assert not progress.live_frontend() and bar.mininterval == progress.HEADLESS_MININTERVAL_S
    bar.close()
    monkeypatch.setattr(progress, "_kernel", lambda: _Kernel(allow_stdin=True))  # JupyterLab, Notebook, VS Code
    assert progress.live_frontend()


def _fake_run_dir(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"loss": "ce"}))
    (d / "metrics.csv").write_text("epoch\n")
    return d


def test_a_missing_run_lists_the_runs_there_are(tmp_path, monkeypatch):
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path))
    with pytest.raises(RunNotFoundError, match="(?s)There are no runs under .*make demo") as exc:
        load_runs([])
    assert exc.value._render_traceback_()[0].endswith(str(exc.value))  # one message, no library frames
    _fake_run_dir(tmp_path / "runs" / "demo")
    _fake_run_dir(tmp_path / "runs" / "sweep" / "a")
    with pytest.raises(RunNotFoundError, match=r"(?s)nope does not exist .*newest first: sweep/a, demo\..*make demo") as exc:
        load_runs(["nope"])
    assert isinstance(exc.value, ValueError)
    with pytest.raises(RunNotFoundError, match="no loss='ala' runs under"):
        load_runs([], loss="ala")
    with pytest.raises(RunNotFoundError, match="does not exist"):
        load_run(tmp_path / "elsewhere")


@pytest.mark.subprocess
@pytest.mark.slow
def test_analysis_notebook_names_the_missing_run_in_one_message(tmp_path, monkeypatch):
    """Run All of 03 with run_dirs at a run that is not there: one short error output, no traceback."""
    import papermill as pm

    monkeypatch.setenv("LTLAB_HOME", str(tmp_path / "home"))
    _fake_run_dir(tmp_path / "home" / "runs" / "demo")
    out = tmp_path / "03.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match="RunNotFoundError"):
        pm.execute_notebook(str(NB / "03_per_class_accuracy.ipynb"), str(out), parameters={"run_dirs": ["mine"]},
                            cwd=str(NB), progress_bar=False, log_output=False)
    (error,) = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])
                if o["output_type"] == "error"]
    assert len(error["traceback"]) == 1, error["traceback"]
    assert "mine does not exist" in error["traceback"][0] and "newest first: demo." in error["traceback"][0]


@pytest.mark.subprocess
@pytest.mark.slow
def test_training_under_papermill_prints_no_line_per_epoch(tmp_path, monkeypatch):
    """A headless kernel: text on stderr, refreshed at most once a minute (no widget, no line per update)."""
    import papermill as pm

    for var in ("CI", "LTLAB_PROGRESS"):  # as on a user's machine
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "01.ipynb"
    pm.execute_notebook(str(NB / "01_train.ipynb"), str(out), cwd=str(NB), progress_bar=False, log_output=False,
                        parameters={"epochs": 6, "progress": True, "device": "cpu", "run_dir": str(tmp_path / "r")})
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    bar = "".join("".join(o["text"]) for o in outputs if o.get("name") == "stderr")
    assert "6/6" in bar and bar.count("/6 [") <= 3, bar  # start and end (+ a minute mark), not 7 refreshes
