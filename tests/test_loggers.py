"""ltlab.loggers: TensorBoard event files that TensorBoard's own reader reads back equal to metrics.csv."""
from __future__ import annotations

import numpy as np
import pytest

BASE = {"dataset": "digits_lt", "epochs": 2, "batch_size": 128, "progress": False, "device": "cpu"}


@pytest.mark.slow
def test_tensorboard_events_equal_metrics_csv(tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import ltlab
    run = ltlab.run({**BASE, "epochs": 3, "eval_every": 2, "tensorboard": True, "run_dir": str(tmp_path / "r")})
    assert list(tmp_path.joinpath("r").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run.dir))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for column, tag in {"train_loss": "loss/train", "acc": "accuracy/overall", "acc_many": "accuracy/many",
                        "acc_medium": "accuracy/medium", "acc_few": "accuracy/few"}.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == list(run.metrics.epoch)  # the evaluated epochs 1 and 2
        np.testing.assert_allclose([e.value for e in events], run.metrics[column], rtol=1e-6)  # float32 in events
    assert [e.step for e in acc.Scalars("lr")] == [0, 1, 2]  # every epoch
    np.testing.assert_allclose([e.value for e in acc.Scalars("lr")][1:], run.metrics.lr, rtol=1e-6)
    ratio = run.probes["grad_ratio"]
    for group, idx in {"many": run.per_class["class_counts"] > 100}.items():
        logged = [e.value for e in acc.Scalars(f"grad_ratio/{group}")]
        np.testing.assert_allclose(logged, np.nanmean(ratio[:, idx], axis=1), rtol=1e-5)
    assert {"grad_ratio/medium", "grad_ratio/few"} <= set(tags)
    with pytest.raises(ValueError, match="tensorboard"):
        ltlab.RunConfig(tensorboard="yes")
