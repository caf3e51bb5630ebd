"""06_widgets, 07_sweep and 08_paper_figures execute headless under papermill with tiny parameters."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "notebooks"

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]  # trains, then papermill


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """One-epoch digits runs of every method ltlab.viz.paper_figures draws (08), CE reused by 06."""
    from ltlab.viz import paper_figures

    root = tmp_path_factory.mktemp("tiny_runs")
    runs = paper_figures.train(1, root, log=lambda _: None, afg_epochs=2,
                               protocol=dict(dataset="digits_lt", imbalance_factor=50, dataset_params={"n_max": 60},
                                             batch_size=128, eval_every=1, warmup_epochs=0))  # 60 ... 1: room for a val split
    return {label: str(r.dir) for label, r in runs.items()}


def _execute(name: str, out_dir: Path, params: dict) -> dict:
    import papermill as pm
    out = out_dir / name
    pm.execute_notebook(str(NB / name), str(out), parameters=params, cwd=str(NB), progress_bar=False,
                        log_output=False)
    return json.loads(out.read_text())


def _text(nb: dict) -> str:
    parts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            parts.append("".join(o.get("text", "")))
            parts.append("".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_widgets_notebook(tmp_path, tiny_runs):
    nb = _execute("06_widgets.ipynb", tmp_path, {"run_dir": tiny_runs["CE"], "train_epochs": 1, "autostart": True,
                                                 "train_root": str(tmp_path / "panel_runs"), "device": "cpu"})
    out = _text(nb)
    assert "finished after 1 epoch(s)" in out
    widget_views = [o for c in nb["cells"] for o in c.get("outputs", [])
                    if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widget_views) >= 3  # post-hoc panel, schedule explorer, training panel
    (run_dir,) = (tmp_path / "panel_runs").iterdir()
    assert (run_dir / "checkpoint.pt").exists() and len(pd.read_csv(run_dir / "metrics.csv")) == 1


def test_sweep_notebook(tmp_path):
    out_root = tmp_path / "sweep"
    nb = _execute("07_sweep.ipynb", tmp_path, {
        "grid": {"loss": ["ce"]}, "seeds": [0, 1], "parallel": 2, "out_root": str(out_root),
        "base_params": {"dataset": "digits_lt", "epochs": 1, "batch_size": 128, "progress": False, "device": "cpu"},
        "table": str(tmp_path / "results")})
    assert "all 2 runs complete" in _text(nb)
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.loss) == ["ce"] and int(table.n.iloc[0]) == 2
    assert {"overall_mean", "overall_std", "many_mean", "medium_mean", "few_mean"} <= set(table.columns)
    tex = (tmp_path / "results.tex").read_text()
    assert "$\\pm$" in tex and "accuracy (\\%)" in tex  # LaTeX-safe caption
    executed = sorted(out_root.glob("*/01_train.ipynb"))
    assert len(executed) == 2  # each run directory holds its executed notebook


def test_paper_figures_notebook(tmp_path, tiny_runs):
    out = tmp_path / "figures"
    _execute("08_paper_figures.ipynb", tmp_path, {"run_dirs": tiny_runs, "output_dir": str(out), "formats": ["png"],
                                                   "max_points": 200})
    written = sorted(p.stem for p in out.glob("*.png"))
    assert written == sorted(paper_figures_stems())
    assert all(p.stat().st_size > 5_000 for p in out.glob("*.png"))
    readme = (out / "README.md").read_text()
    assert all(f"`{stem}.png`" in readme for stem in written)
    assert "| epoch 1 | " in readme and "Numbers: " in readme


def paper_figures_stems() -> list[str]:
    from ltlab.viz.paper_numbers import FIGURES
    return list(FIGURES)


def test_paper_figure_runs_are_reused_only_with_the_same_full_config(tiny_runs, tmp_path):
    """A figure run is reused only when every result-relevant field matches, defaults included: a config that
    leaves lr to the default must not reuse a run trained at another lr (the GLAG stage-two run relied on
    RunConfig's old defaults and would have been passed off as the same run after they changed)."""
    from ltlab.viz import paper_figures
    from ltlab.runs import load_run

    ce = load_run(tiny_runs["CE"])
    cfg = {k: v for k, v in ce.config.items() if k in ("dataset", "imbalance_factor", "dataset_params", "batch_size",
                                                        "epochs", "loss", "warmup_epochs", "eval_every", "seed",
                                                        "model", "lr_schedule", "weight_decay", "device")}
    same = paper_figures._train_one("CE", {**cfg, "lr": ce.config["lr"], "run_dir": str(ce.dir)}, lambda _: None)
    assert same.dir == ce.dir
    with pytest.raises(ValueError, match=r"holds a run with other parameters \(lr\)"):
        paper_figures._train_one("CE", {**cfg, "lr": ce.config["lr"] * 2, "run_dir": str(ce.dir)}, lambda _: None)
    # a run trained with a value the new config leaves to the default (before: only the given keys were compared)
    import shutil
    other = tmp_path / "ce_momentum"
    shutil.copytree(ce.dir, other)
    held = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**held, "momentum": 0.5}))
    assert "momentum" not in cfg
    with pytest.raises(ValueError, match=r"holds a run with other parameters \(momentum\)"):
        paper_figures._train_one("CE", {**cfg, "lr": ce.config["lr"], "run_dir": str(other)}, lambda _: None)
