"""RunConfig validation: every bad field gives a ValueError naming it, and nothing is written."""
from __future__ import annotations

import pytest

from ltlab import RunConfig


def test_defaults_validate():
    c = RunConfig()
    assert c.dataset == "digits_lt" and c.loss == "ce" and c.resolved_head == "linear"


@pytest.mark.parametrize("field,value,needle", [
    ("dataset", "imagenet_typo", "valid"),
    ("model", "resnet33", "valid"),
    ("loss", "cross_entropy", "valid"),
    ("sampler", "balanced", "valid"),
    ("imbalance_factor", 0.5, ">= 1"),
    ("imbalance_factor", float("nan"), "finite"),
    ("batch_size", 0, ">= 1"),
    ("epochs", 0, ">= 1"),
    ("lr", -0.1, "> 0"),
    ("precision", "fp8", "fp32"),
    ("device", "tpu", "cuda"),
    ("lr_schedule", "poly", "cosine"),
    ("milestones", [10, "x"], "list"),
])
def test_bad_field_names_itself(field, value, needle):
    with pytest.raises(ValueError) as e:
        RunConfig(**{field: value})
    assert f"RunConfig.{field}" in str(e.value) and needle in str(e.value)


def test_unknown_parameter_lists_valid():
    with pytest.raises(ValueError, match="unknown parameter.*'epoch'.*valid parameters"):
        RunConfig(epoch=3)


def test_loss_params_checked_against_loss():
    with pytest.raises(ValueError, match="no hyper-parameter"):
        RunConfig(loss="ce", loss_params={"gamma": 2.0})


def test_drw_needs_a_drw_loss():
    with pytest.raises(ValueError, match="losses with drw_start"):
        RunConfig(loss="balanced_softmax", drw_start=3)
    assert RunConfig(loss="ce", drw_start=3).loss_kwargs() == {"drw_start": 3}


def test_stage_two_needs_init_from_and_resume_needs_run_dir():
    with pytest.raises(ValueError, match="init_from"):
        RunConfig(stage="classifier")
    with pytest.raises(ValueError, match="run_dir"):
        RunConfig(resume=True)


def test_failed_validation_writes_nothing(tmp_path, monkeypatch):
    import ltlab

    monkeypatch.setenv("LTLAB_HOME", str(tmp_path))
    with pytest.raises(ValueError):
        ltlab.run({"batch_size": 0})
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        ltlab.run({"dataset": "cifar10_lt", "root": str(tmp_path / "nowhere")})
    assert not (tmp_path / "runs").exists()


def test_replace_with_a_flat_stage_keyword_overrides_stage_params():
    """Issue 24, bug 4: the folded stage_params was fed back beside the alias ("give it once")."""
    cfg = RunConfig(stage="classifier", init_from="runs/x", classifier_init="stage_one")
    new = cfg.replace(classifier_init="reset")
    assert new.stage_params["classifier_init"] == "reset" and cfg.stage_params["classifier_init"] == "stage_one"
    assert new.replace(epochs=3).stage_params == new.stage_params
    afg = RunConfig(stage="afg", init_from="runs/x", val_per_class=2, afg_params={"k": 3})
    assert afg.replace(afg_params={"beta": 0.4}).stage_params == {"k": 3, "beta": 0.4}
    with pytest.raises(ValueError, match="an option of stage"):
        cfg.replace(stage="joint", init_from=None, backbone_mode="train")
