"""Analysis notebooks 02-05 run headless under papermill on tiny runs and export every expected figure."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest


NB = Path(__file__).resolve().parent.parent / "notebooks"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]  # trains, then papermill


@pytest.fixture(scope="module")
def runs(tiny_run_copy):
    return {name: tiny_run_copy(name) for name in ("ce", "gala", "ghm_cwap")}  # tests/conftest.py


def _execute(name: str, params: dict, tmp_path: Path) -> dict:
    import papermill as pm

    out = tmp_path / name
    pm.execute_notebook(str(NB / name), str(out), parameters=params, cwd=str(NB), progress_bar=False,
                        log_output=False)
    return json.loads(out.read_text())


def _check(out_dir: Path, names: list[str], export: bool) -> None:
    """Every expected figure exported as PNG; without Chromium the notebook ran but its export is untested."""
    if not export:
        pytest.skip("Chromium is not installed: the notebook ran without exporting, so its PNG export is not "
                    "checked (sudo apt-get install chromium)")
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{n}.png" for n in names)


def _params(tmp_path: Path, **kw) -> dict:
    return {"output_dir": str(tmp_path / "figs"), "formats": ["png"], "export": CHROMIUM is not None, **kw}


def test_02_tsne_extracts_and_exports(runs, tmp_path):
    dirs = [str(runs["ce"].dir), str(runs["gala"].dir)]
    assert not (runs["ce"].dir / "features_test.npz").exists()
    p = _params(tmp_path, run_dirs=dirs, labels=["CE", "GALA"], extract=True, max_points=300, perplexity=10)
    nb = _execute("02_tsne.ipynb", p, tmp_path)
    assert (runs["ce"].dir / "features_test.npz").exists()
    assert any(o.get("output_type") == "display_data" for c in nb["cells"] for o in c.get("outputs", []))
    _check(tmp_path / "figs", ["tsne_CE", "tsne_GALA", "tsne_side_by_side"], p["export"])


def test_03_per_class_accuracy(runs, tmp_path):
    p = _params(tmp_path, run_dirs=[str(runs[k].dir) for k in ("ce", "gala", "ghm_cwap")])
    _execute("03_per_class_accuracy.ipynb", p, tmp_path)
    _check(tmp_path / "figs", ["per_class_accuracy", "accuracy_over_epochs", "confusion_ce", "confusion_gala",
                               "confusion_ghm_cwap", "prediction_counts", "true_class_probability"], p["export"])


def test_04_gradient_ratios(runs, tmp_path):
    p = _params(tmp_path, run_dirs=[str(runs["ce"].dir), str(runs["gala"].dir)])
    _execute("04_gradient_ratios.ipynb", p, tmp_path)
    _check(tmp_path / "figs", ["gradient_ratio_by_class", "gradient_ratio_curves", "negative_gradient_sources",
                               "weight_norms", "class_feature_similarity", "gradient_heatmap_ce",
                               "gradient_heatmap_gala", "gala_theta_phi_gala"], p["export"])


def _text(nb: dict) -> str:
    return "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


def test_05_schedules_needs_no_run(tmp_path, monkeypatch):
    # no runs at all under runs/ (an empty LTLAB_HOME): synthetic GHM-CWAP histogram and GLAG beta, no ALA run;
    # the run-based branches are the same builders, tested with runs in test_plotting.py and below
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path / "home"))
    p = _params(tmp_path, n_max=200, num_classes=5, num_epochs=20, glag_generation_epochs=6, drw_start=16)
    text = _text(_execute("05_schedules.ipynb", p, tmp_path))
    assert "class counts: [200, 63, 20, 6, 2]" in text and "no ALA run under runs/" in text
    _check(tmp_path / "figs", ["glag_schedule", "ala_factors", "gcl_cloud_widths", "ghm_cwap_bins", "ghm_cwap_fig2",
                               "drw_weights"], p["export"])


def test_02_to_05_run_with_their_defaults_after_a_demo_run(tmp_path, monkeypatch, tiny_run_copy):
    """A newcomer's Run All: after `make demo` (here a 2-epoch digits run in runs/demo) and one ALA run, every
    analysis notebook runs with its default parameters and draws the newest runs."""
    home = tmp_path / "home"
    monkeypatch.setenv("LTLAB_HOME", str(home))
    # the session's shared 2-epoch digits runs (tests/conftest.py), trained once: ALA, and CE as the demo run
    tiny_run_copy("ala", home / "runs" / "ala")
    demo = tiny_run_copy("ce", home / "runs" / "demo")
    newest = (home / "runs" / "ala" / "metrics.csv").stat().st_mtime + 10  # the copies keep the training times:
    os.utime(demo.dir / "metrics.csv", (newest, newest))                  # the demo run is the newest
    for name in ("02_tsne.ipynb", "03_per_class_accuracy.ipynb", "04_gradient_ratios.ipynb"):
        assert str(demo.dir) in _text(_execute(name, {}, tmp_path)), name
    assert "DF and QF from " + str(home / "runs" / "ala") in _text(_execute("05_schedules.ipynb", {}, tmp_path))


def test_no_runs_says_how_to_make_one(tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("LTLAB_HOME", str(tmp_path / "empty"))
    with pytest.raises(pm.PapermillExecutionError, match="make demo"):
        _execute("03_per_class_accuracy.ipynb", {}, tmp_path)
