"""The workbench: its form for every loss builds a valid RunConfig, the comparison logic (labels of the values
that differ from the first run, the table, export) on fake runs, and the panel headless on tiny digits runs."""
from __future__ import annotations

import json
import shlex

import pandas as pd
import pytest

from ltlab import RunConfig
from ltlab.viz import tweaks
from ltlab.losses import LOSSES
from ltlab.space import form_space

pytest.importorskip("ipywidgets")

TINY = {"dataset": "digits_lt", "imbalance_factor": 10, "batch_size": 128, "device": "cpu",
        "model_params": {"width": 8}}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_the_form_of_every_loss_builds_a_valid_runconfig(loss, tmp_path):
    from ltlab.viz.workbench import Workbench

    wb = Workbench(loss="ce", run_root=tmp_path)
    wb.loss.value = loss  # rebuilds the form
    values = wb.values()
    assert set(values) == set(form_space(loss).params)
    config = RunConfig(**wb.params())
    assert config.loss == loss and config.epochs == 5
    for sampler in ("class_aware", "cben"):  # the sampler's options join the form
        wb.set_values({"sampler": sampler})
        RunConfig(**wb.params())
    assert any(k.startswith("sampler_params.") for k in wb.values())


def test_form_values_round_trip_and_out_of_range_note(tmp_path):
    from ltlab.viz.workbench import Workbench

    wb = Workbench(loss="gcl", run_root=tmp_path, epochs=3)
    wb._widgets["noise_mul"].value = 0.8
    assert wb.params()["loss_params"]["noise_mul"] == 0.8 and wb.note.value == ""
    wb._widgets["noise_mul"].value = 2.5  # outside [0, 1.5]: allowed, with a note
    assert "noise_mul=2.5" in wb.note.value and RunConfig(**wb.params()).loss_params["noise_mul"] == 2.5
    wb.loss.value = "ldam"
    on, start = wb._widgets["drw_start"]
    on.value, start.value = True, 2
    assert RunConfig(**wb.params()).drw_start == 2 and wb.values()["lr"] == 0.05
    params = {"loss": "focal", "loss_params": {"form": "softmax"}}
    assert "alpha" not in tweaks.form_params("focal", tweaks.form_values(params))["loss_params"]  # sigmoid only


def _fake_run(root, name, config, rows):
    d = root / name
    d.mkdir(parents=True)
    full = {**RunConfig(**config).to_dict(), "run_dir": str(d)}
    (d / "config.json").write_text(json.dumps(full))
    pd.DataFrame([{"epoch": e, "lr": 0.1, "train_loss": 1.0, "acc": a, "acc_many": a + 0.1, "acc_medium": a,
                   "acc_few": a - 0.1, "seconds": 1.0} for e, a in enumerate(rows)]).to_csv(d / "metrics.csv",
                                                                                           index=False)
    return d


def test_labels_name_the_values_that_differ_from_the_first_run():
    a = RunConfig(loss="gcl").to_dict()
    b = RunConfig(loss="gcl", loss_params={"noise_mul": 0.8}).to_dict()
    c = RunConfig(loss="gcl", loss_params={"noise_mul": 0.5}, lr=0.1).to_dict()  # 0.5 is the default: no diff
    d = RunConfig(loss="ldam", loss_params={"max_m": 0.3}).to_dict()
    e = RunConfig(loss="gcl", sampler="class_aware", sampler_params={"num_samples_cls": 4}).to_dict()
    assert tweaks.labels([a, b, c, d, a, e]) == [
        "gcl", "gcl noise_mul=0.8", "gcl lr=0.1", "ldam max_m=0.3",
        "gcl (same)", "gcl sampler=class_aware sampler_params.num_samples_cls=4"]


def test_comparison_table_export_and_state_on_fake_runs(tmp_path):
    _fake_run(tmp_path, "r1", {"loss": "gcl", "epochs": 3}, [0.3, 0.4, 0.5])
    _fake_run(tmp_path, "r2", {"loss": "gcl", "epochs": 3, "loss_params": {"noise_mul": 0.8}}, [0.2, 0.45])
    table = tweaks.comparison_table(tweaks.list_workbench_runs(tmp_path))
    assert list(table.label) == ["gcl", "gcl noise_mul=0.8"]
    assert list(table.status) == ["complete", "stopped"] and list(table.epochs) == ["3/3", "2/3"]
    assert table.overall.tolist() == [0.5, 0.45] and table.few.tolist() == pytest.approx([0.4, 0.35])
    config = json.loads((tmp_path / "r2" / "config.json").read_text())
    command = tweaks.train_command(config)
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "ltlab", "train"] and "run_dir" not in argv and "device" not in argv
    from ltlab.launch.presets import load_preset, parse_params
    pairs = [argv[i + 1:i + 3] for i in range(4, len(argv), 3)]
    rebuilt = RunConfig(**parse_params(pairs))
    assert rebuilt.loss_params == {"noise_mul": 0.8} and rebuilt.epochs == 3
    preset = tweaks.write_preset(config, tmp_path / "presets" / "r2.yaml")
    assert RunConfig(**load_preset(preset)).fingerprint() == rebuilt.fingerprint()
    tweaks.write_state(tmp_path, {"hidden": ["r1"]})
    from ltlab.viz.workbench import Workbench
    wb = Workbench(run_root=tmp_path)  # reopened: the comparison is rebuilt from the run directories
    assert list(wb.table().run) == ["r2"] and list(wb.table(include_hidden=True).run) == ["r1", "r2"]
    assert len(wb.curves.data) == 4  # one visible run x overall / many / medium / few
    wb.hide(("r1",))
    assert list(wb.table().run) == ["r1", "r2"]
    wb.copy_to_form("r2")
    assert wb.values()["noise_mul"] == 0.8 and wb.values()["epochs"] == 3
    command2, path = wb.export("r2")
    assert command2 == command and path.exists() and "python -m ltlab train" in wb.output.value


def test_vary_presets_and_figure():
    presets = tweaks.vary_presets({"loss": "gcl", "run_dir": "x", "loss_params": {"m": 0.1}}, "noise_mul",
                                  [0.2, 0.5])
    assert [p["loss_params"] for p in presets] == [{"m": 0.1, "noise_mul": 0.2}, {"m": 0.1, "noise_mul": 0.5}]
    assert "run_dir" not in presets[0]
    assert tweaks.vary_presets({"loss": "ce"}, "lr", [0.1])[0]["lr"] == 0.1
    table = pd.DataFrame({"value": [0.5, 0.2], "overall": [0.4, 0.3], "many": [0.5, 0.4], "medium": [0.3, 0.3],
                          "few": [0.1, 0.2]})
    fig = tweaks.vary_figure(table, "noise_mul")
    assert [t.name for t in fig.data] == ["overall", "many", "medium", "few"]
    assert list(fig.data[0].x) == [0.2, 0.5]


@pytest.mark.slow
def test_panel_headless_start_two_runs_stop_and_continue(tmp_path, one_thread):
    from ltlab.viz.workbench import Workbench

    wb = Workbench(loss="gcl", run_root=tmp_path, epochs=3, **{k: v for k, v in TINY.items()
                                                               if k not in ("dataset", "imbalance_factor")})
    first = wb.start()
    wb.wait()
    wb._widgets["noise_mul"].value = 0.9
    second = wb.start()
    wb.stop()  # the second run ends after its first epoch, its checkpoint kept
    wb.wait()
    table = wb.table()
    assert list(table.label) == ["gcl", "gcl noise_mul=0.9"]
    assert table.status.tolist()[0] == "complete" and table.status.tolist()[1] in ("stopped", "complete")
    wb.continue_run(second.name)
    wb.wait()
    table = wb.table()
    assert table.status.tolist() == ["complete", "complete"] and first.name == table.run[0]
    epochs = pd.read_csv(second / "metrics.csv").epoch.tolist()
    assert epochs == [0, 1, 2]  # continued, not restarted
    assert len(wb.curves.data) == 8
    wb.selected.value = (first.name, second.name)
    assert len(wb.per_class.data) == 2


@pytest.mark.slow
@pytest.mark.subprocess
def test_tuning_notebook_runs_headless(tmp_path, monkeypatch):
    """09_tuning under papermill: a workbench run, "vary one value" over two values, a 4-trial search and its
    figures, everything under tmp_path."""
    import papermill as pm

    pytest.importorskip("optuna")
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("LTLAB_HOME", str(tmp_path / "home"))
    out = tmp_path / "09.ipynb"
    pm.execute_notebook(str(root / "notebooks" / "09_tuning.ipynb"), str(out), cwd=str(root / "notebooks"),
                        progress_bar=False, log_output=False,
                        parameters={"epochs": 1, "device": "cpu", "autostart": True, "vary_values": [0.2, 0.8],
                                    "run_root": str(tmp_path / "bench"), "search_trials": 4,
                                    "out_root": str(tmp_path / "search")})
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert len(list((tmp_path / "bench").glob("vary_*/*/metrics.csv"))) == 2
    assert len(list((tmp_path / "search").glob("trial_*/search.json"))) == 4


def test_a_preset_fills_the_form(tmp_path):
    from ltlab.launch.presets import load_preset
    from ltlab.viz.workbench import Workbench

    wb = Workbench(loss="ce", run_root=tmp_path)
    name = next(n for n in wb.preset.options if n.startswith("ldam"))
    wb.preset.value = name
    preset = load_preset(tweaks.notebooks_dir() / "presets" / name)
    values = wb.values()
    assert wb.loss.value == "ldam" and values["epochs"] == preset["epochs"] and values["lr"] == preset["lr"]
    assert values["drw_start"] == preset.get("drw_start") and "filled from" in wb.status.value
    RunConfig(**wb.params())
