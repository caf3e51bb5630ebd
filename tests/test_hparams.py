"""TensorBoard HParams: a run with tensorboard=True writes its hyper-parameters as an HParams session whose
metrics are its accuracy scalars; TensorBoard's own reader and the hparams plugin's protos read them back."""
from __future__ import annotations

import pytest

pytest.importorskip("tensorboard", reason="TensorBoard HParams need the tensorboard package")

BASE = {"dataset": "digits_lt", "epochs": 2, "batch_size": 128, "progress": False, "device": "cpu",
        "imbalance_factor": 10, "model_params": {"width": 8}}


def _plugin_data(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    return acc, {tag: plugin_data_pb2.HParamsPluginData.FromString(raw) for tag, raw in content.items()}


@pytest.mark.slow
def test_hparams_session_reads_back_with_loss_hyperparameters_and_metrics(tmp_path, one_thread):
    import ltlab

    run = ltlab.run({**BASE, "loss": "gcl", "loss_params": {"noise_mul": 0.8}, "tensorboard": True,
                     "run_dir": str(tmp_path / "r")})
    acc, data = _plugin_data(run.dir)
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(data)
    hp = data["_hparams_/session_start_info"].session_start_info.hparams
    assert hp["loss"].string_value == "gcl" and hp["loss.noise_mul"].number_value == pytest.approx(0.8)
    assert hp["loss.s"].number_value == 30.0  # unset: the search space's default
    assert hp["lr"].number_value == pytest.approx(run.config["lr"]) and hp["epochs"].number_value == 2
    metrics = [m.name.tag for m in data["_hparams_/experiment"].experiment.metric_infos]
    assert metrics[:4] == ["accuracy/overall", "accuracy/many", "accuracy/medium", "accuracy/few"]
    final = acc.Scalars("accuracy/overall")[-1]  # what the HParams tab shows for the session
    assert final.step == 1 and final.value == pytest.approx(run.metrics.acc.iloc[-1], rel=1e-6)


def test_hparams_of_flattens_a_config():
    from ltlab.loggers import hparams_of

    hp = hparams_of({"loss": "ldam", "loss_params": {"max_m": 0.3}, "drw_start": None, "lr": 0.1,
                     "sampler_params": {"num_samples_cls": 4}, "milestones": [1, 2]})
    assert hp["loss.max_m"] == 0.3 and hp["loss.s"] == 30.0 and hp["drw_start"] == "None"
    assert hp["sampler.num_samples_cls"] == 4 and hp["method"] == "ldam" and "milestones" not in hp
    assert all(isinstance(v, (bool, int, float, str)) for v in hp.values())
