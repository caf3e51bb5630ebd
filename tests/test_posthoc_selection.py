"""Post-hoc tau is never chosen on the test split unless asked for, and every result says which split chose it
(issue 29)."""
from __future__ import annotations

import numpy as np
import pytest

import ltlab
from ltlab.posthoc import posthoc_on_run
from ltlab.posthoc.steps import posthoc_method

BASE = dict(dataset="digits_lt", imbalance_factor=10, model="convnet_small", batch_size=128, lr=0.05, epochs=1,
            device="cpu", progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("posthoc_sel")
    # with_val: the head capped at 120 leaves 4 unused images per class for a validation split
    return {"with_val": ltlab.run({**BASE, "dataset_params": {"n_max": 120}, "val_per_class": 4,
                                   "run_dir": str(d / "v")}),
            "no_val": ltlab.run({**BASE, "run_dir": str(d / "n")})}


def _pred_acc(z, y):
    return float(np.mean(z.argmax(1) == y))


def test_default_selects_on_validation_where_there_is_one(runs):
    res = posthoc_on_run(runs["with_val"], "logit_adjust", taus=[0.0, 1.0, 2.0])
    assert res["select_on"] == "val" and "validation" in res["selection"]
    sweep = {r["tau"]: r for r in res["sweep"]}
    assert res["tau"] == max(sweep, key=lambda t: (sweep[t]["selection_acc"], -t))
    # the selection accuracy is not the test accuracy: it was measured on other images
    pc = runs["with_val"].per_class
    assert len(pc["test_labels"]) != 4 * 10


def test_default_without_validation_keeps_the_fixed_tau(runs):
    res = posthoc_on_run(runs["no_val"], "logit_adjust", tau=1.0, taus=[0.0, 1.0, 2.0])
    assert res["select_on"] == "none" and res["tau"] == 1.0 and "sweep" not in res
    assert "no validation split" in res["selection"]
    z = runs["no_val"].per_class["test_logits"].astype(np.float64)
    y = runs["no_val"].per_class["test_labels"]
    counts = np.asarray(runs["no_val"].class_counts, dtype=np.float64)
    assert res["overall"] == pytest.approx(_pred_acc(z - np.log(counts / counts.sum()), y))


def test_test_split_selection_only_when_asked_and_said(runs):
    res = posthoc_on_run(runs["no_val"], "pn", taus=[0.0, 0.5, 1.0], select_on="test")
    assert res["select_on"] == "test" and "TEST" in res["selection"]
    assert res["selection_acc"] == max(r["test_acc"] for r in res["sweep"])
    with pytest.raises(ValueError, match="no room for a validation split|val_per_class") as exc:
        posthoc_on_run(runs["no_val"], "pn", taus=[0.0, 1.0], select_on="val")
    assert "val_policy" not in str(exc.value)


def test_function_names_are_accepted_as_method_names():
    assert posthoc_method("tau_normalize") == "tau_norm" and posthoc_method("pn_rebalance") == "pn"
    with pytest.raises(ValueError, match="valid: logit_adjust, pn, tau_norm"):
        posthoc_method("temperature")
