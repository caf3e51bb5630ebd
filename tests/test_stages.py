"""Second stages as runs of the one loop: freezing, initialisation, GLAG AFG, post-hoc steps, val split."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import ltlab
from ltlab import features, posthoc
from ltlab.viz import plotting
from ltlab.build import rebuild_model
from ltlab.config import RunConfig, run_config
from ltlab.data import get_dataset
from ltlab.build import load_datasets
from ltlab.engine import build_model
from ltlab.features import TailFeatureGenerator
from ltlab.models import TukeyHead
from ltlab.launch.presets import stage_two_config
from ltlab.runs import load_checkpoint, results_table
from ltlab.stages.afg import AFGLoader, AFGLoss

# digits-LT with the head capped at 120 of its ~124 images: counts 120 92 71 55 42 32 25 19 14 12
# (many/medium/few non-empty) and 4 unused images per class for a validation split
BASE = dict(dataset="digits_lt", imbalance_factor=10, dataset_params={"n_max": 120}, val_per_class=4,
            model="convnet_small", batch_size=128, lr=0.05, lr_schedule="cosine", device="cpu", progress=False)


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory):
    d = tmp_path_factory.mktemp("s1")
    return {"ce": ltlab.run({**BASE, "epochs": 2, "run_dir": str(d / "ce")}),
            "gcl": ltlab.run({**BASE, "epochs": 2, "loss": "gcl", "run_dir": str(d / "gcl")})}


def _ckpt(run):
    return load_checkpoint(run.dir)["model"]


def _backbone(sd):
    return {k: v for k, v in sd.items() if not k.startswith("head.")}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_stage_two_freezes_backbone_and_starts_from_stage_one(stage_one, tmp_path, mode):
    s1 = stage_one["gcl"]
    cfg = stage_two_config(s1, loss="gcl", loss_params={"s": 20.0, "m": 0.1, "gamma": 1.0}, sampler="cben",
                                  mixup_alpha=1.0, epochs=2, lr=0.01, backbone_mode=mode, run_dir=str(tmp_path / "s2"))
    train_ds, _ = load_datasets(cfg)
    model = build_model(cfg, train_ds)
    before = _ckpt(s1)
    assert torch.equal(model.head.weight.detach(), before["head.weight"])  # classifier from stage one
    assert all(not p.requires_grad for p in model.backbone_parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    s2 = ltlab.run(cfg)
    after = _ckpt(s2)
    for k, v in _backbone(before).items():
        if "running_" in k or "num_batches" in k:
            # eval mode (GCL code): BN statistics untouched; train mode (cRT/LWS code): they move
            assert torch.equal(v, after[k]) == (mode == "eval"), k
        else:
            assert torch.equal(v, after[k]), k  # every backbone weight bit-identical
    assert not torch.equal(before["head.weight"], after["head.weight"])  # the classifier did train
    assert s2.config["init_from"] == str(s1.dir) and s2.config["stage"] == "classifier"
    assert json.loads((s2.dir / "config.json").read_text())["init_from_resolved"] == str(s1.dir.resolve())


def test_crt_reinitialises_and_lws_wraps_the_stage_one_head(stage_one, tmp_path):
    s1 = stage_one["ce"]
    w1 = _ckpt(s1)["head.weight"]
    crt = stage_two_config(s1, classifier_init="reset", sampler="class_aware")
    model = build_model(crt, load_datasets(crt)[0])
    assert not torch.equal(model.head.weight.detach(), w1)
    lws = stage_two_config(s1, head="lws", sampler="class_aware", epochs=2, run_dir=str(tmp_path / "lws"))
    model = build_model(lws, load_datasets(lws)[0])
    assert model.head_kind == "lws" and torch.equal(model.head.weight.detach(), w1)
    assert torch.equal(model.head.scale.detach(), torch.ones(10))
    after = _ckpt(ltlab.run(lws))
    assert torch.equal(after["head.weight"], w1) and torch.equal(after["head.bias"], _ckpt(s1)["head.bias"])
    assert not torch.equal(after["head.scale"], torch.ones(10))  # only the scales train (Kang's LWS)


def test_incompatible_or_missing_stage_one_is_refused(stage_one, tmp_path):
    s1 = str(stage_one["ce"].dir)
    out = tmp_path / "s2"
    cases = [({"init_from": str(tmp_path / "nope")}, "does not exist"),
             ({"init_from": s1, "model": "resnet20"}, "model"),
             ({"init_from": s1, "imbalance_factor": 5}, "class_counts"),
             ({"init_from": s1, "dataset": "synthetic_lt", "dataset_params": {}, "val_per_class": 0}, "dataset"),
             ({"init_from": s1, "head": "cosine"}, "classifier_init='reset'")]
    for extra, needle in cases:
        with pytest.raises(ValueError, match=needle):
            ltlab.run({**BASE, "stage": "classifier", "epochs": 1, "run_dir": str(out), **extra})
        assert not out.exists()  # nothing half-written
    with pytest.raises(ValueError, match="RunConfig.stage.*init_from"):
        RunConfig(stage="afg")


# ---------------------------------------------------------------------------------------- GLAG AFG
@pytest.mark.slow
def test_afg_stage_trains_the_head_on_generated_features(stage_one, tmp_path):
    s1 = stage_one["ce"]
    cfg = dict(BASE, stage="afg", init_from=str(s1.dir), epochs=2)
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    before, after = _ckpt(s1), _ckpt(full)
    assert all(torch.equal(v, after[k]) for k, v in _backbone(before).items())
    assert sorted(k for k in after if k.startswith("head.")) == ["head.linear.bias", "head.linear.weight",
                                                                 "head.tukey_lambda"]
    assert not torch.equal(before["head.weight"], after["head.linear.weight"])
    assert full.probes["alpha"].tolist() == pytest.approx([0.0, 2 ** 0.5 - 1])
    # the saved model applies Tukey in its head: model(images) reproduces the logits the loop evaluated
    model = rebuild_model(full)
    assert isinstance(model.head, TukeyHead) and float(model.head.tukey_lambda) == 0.5
    test_ds = load_datasets(run_config(full))[1]
    x = torch.stack([test_ds[i][0] for i in range(len(test_ds))]).float()
    x = (x / 255.0 - test_ds.mean[0]) / test_ds.std[0]
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), full.per_class["test_logits"], rtol=1e-4, atol=1e-4)
    # interrupted after one generation epoch and resumed: the same head (beta state is checkpointed)
    part = ltlab.run({**cfg, "run_dir": str(tmp_path / "part"), "epochs_per_call": 1})
    assert len(part.metrics) == 1
    resumed = ltlab.run({**cfg, "run_dir": str(tmp_path / "part"), "resume": True})
    assert torch.equal(_ckpt(resumed)["head.linear.weight"], after["head.linear.weight"])


@pytest.fixture(scope="module")
def second_stages(stage_one, tmp_path_factory):
    """One-epoch GLAG AFG, cRT and LWS stage twos on the CE stage one."""
    s1, d = stage_one["ce"], tmp_path_factory.mktemp("s2")
    afg = {**BASE, "stage": "afg", "init_from": str(s1.dir), "epochs": 1, "run_dir": str(d / "afg")}
    return {"afg": ltlab.run(afg),
            "crt": ltlab.run(stage_two_config(s1, classifier_init="reset", sampler="class_aware", backbone_mode="train",
                                              epochs=1, run_dir=str(d / "crt"))),
            "lws": ltlab.run(stage_two_config(s1, head="lws", sampler="class_aware", epochs=1, run_dir=str(d / "lws")))}


@pytest.mark.parametrize("name,head", [("afg", "tukey_linear"), ("crt", "linear"), ("lws", "lws")])
def test_rebuild_model_features_and_tsne_of_second_stages(second_stages, name, head):
    """rebuild_model gives each stage two's own head (the kind saved with the weights); its features reproduce
    the test logits the loop evaluated, and draw a t-SNE (an AFG run failed here before issue 15: RuntimeError,
    missing head.weight)."""
    run = second_stages[name]
    model = rebuild_model(run)
    assert model.head_kind == head and not model.training
    assert load_checkpoint(run.dir)["head_kind"] == head
    out = features.extract_features(None, run, "test")
    np.testing.assert_allclose(out["logits"], run.per_class["test_logits"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out["labels"], run.per_class["test_labels"])
    df = features.tsne(out["features"], out["labels"], class_counts=run.class_counts, preds=out["logits"].argmax(1),
                       perplexity=10, n_jobs=1)
    assert len(df) == len(out["labels"]) and np.isfinite(df[["x", "y"]].to_numpy()).all()
    assert len(plotting.tsne_scatter(df).data) >= 1
    assert features.load_run_model(run.dir)[0].head_kind == head


def _toy_generator(seed=0):
    rng = np.random.default_rng(seed)
    counts = [120, 40, 8]
    y = np.repeat(np.arange(3), counts)
    x = np.abs(rng.normal(size=(len(y), 4)) + np.arange(3)[y, None])
    return TailFeatureGenerator(random_state=0).fit(x, y), torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def test_afg_loader_batches_and_beta_rule():
    gen, x, y = _toy_generator()
    teacher = torch.randn(len(y), 3)

    class Fixed(torch.nn.Module):  # a classifier whose validation accuracy we dictate
        def __init__(self):
            super().__init__()
            self.preds = None

        def forward(self, f):
            return torch.nn.functional.one_hot(self.preds, 3).float()

    clf = Fixed()
    val_y = torch.tensor([0, 1, 1, 2, 2])
    loader = AFGLoader(gen, x, y, teacher, batch_size=50, seed=3, classifier=clf, val=(torch.zeros(5, 4), val_y))
    clf.preds = torch.tensor([0, 1, 0, 2, 0])        # acc per class: 1, 0.5, 0.5
    loader.set_epoch(0)
    assert gen.beta_[[1, 2]].tolist() == [0.6, 0.6]  # first epoch: reference accuracy only
    clf.preds = torch.tensor([0, 1, 1, 0, 0])        # class 1 up, class 2 down
    loader.set_epoch(1)
    loader.set_epoch(1)                              # idempotent within an epoch
    np.testing.assert_allclose(gen.beta_[[1, 2]], [0.65, 0.55])
    xs, ys, masks, teach = [], [], [], []
    for bx, by, extra in loader:
        xs.append(bx), ys.append(by), masks.append(extra["head_mask"]), teach.append(extra["teacher_logits"])
    ys, masks = torch.cat(ys), torch.cat(masks)
    assert torch.bincount(ys).tolist() == [120, 120, 120] and len(loader) == 8  # every class topped up to n_max
    assert masks.sum() == 120 and (ys[masks] == 0).all()  # KD only on the real head-class rows
    # real rows are Tukey-transformed features with their teacher logits
    real, teach = torch.cat(xs)[masks], torch.cat(teach)[masks]
    assert torch.isclose(torch.sort(real.sum(1)).values, torch.sort(x[:120].clamp(min=0).sqrt().sum(1)).values).all()
    assert torch.equal(torch.sort(teach.sum(1)).values, torch.sort(teacher[:120].sum(1)).values)
    assert loader.state_dict()["beta"][1] == pytest.approx(0.65)


def test_afg_loss_is_ce_plus_alpha_kd():
    torch.manual_seed(0)
    z, t = torch.randn(6, 4, dtype=torch.float64, requires_grad=True), torch.randn(6, 4, dtype=torch.float64)
    y, mask = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([True, False, True, False, False, True])
    loss = AFGLoss(ltlab.create_loss("ce", [10, 5, 3, 2]), s=1.0, c=2.0)
    loss.set_epoch(20, 40)
    zn, tn, m = z.detach().numpy(), t.numpy(), mask.numpy()
    lz = zn - np.log(np.exp(zn).sum(1, keepdims=True))
    lt = tn - np.log(np.exp(tn).sum(1, keepdims=True))
    ce = -lz[np.arange(6), y.numpy()].mean()
    kd = (np.exp(lt) * (lt - lz)).sum(1)[m].mean()
    alpha = 2 ** 0.5 - 1
    np.testing.assert_allclose(loss(z, y, teacher_logits=t, head_mask=mask).item(), ce + alpha * kd, rtol=1e-12)


# ---------------------------------------------------------------------------------------- post-hoc
def test_pn_and_logit_adjust_on_saved_logits(stage_one):
    run = stage_one["ce"]
    z, labels, counts = run.per_class["test_logits"].astype(np.float64), run.per_class["test_labels"], run.class_counts
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pred = (p / p.sum(0, keepdims=True) ** 0.7).argmax(1)
    got = posthoc.pn_accuracy(run, tau=0.7)
    assert got["overall"] == pytest.approx(np.mean(pred == labels))
    few = [c for c, n in enumerate(counts) if n < 20]
    assert got["few"] == pytest.approx(np.mean([np.mean(pred[labels == c] == c) for c in few]))
    la = posthoc.logit_adjust_accuracy(run, tau=1.0)
    pred = (z - np.log(np.asarray(counts) / sum(counts))).argmax(1)
    assert la["overall"] == pytest.approx(np.mean(pred == labels))


def test_tau_normalization_chooses_on_validation(stage_one):
    run = stage_one["ce"]
    res = posthoc.tau_normalization(run, taus=[0.0, 0.5, 1.0, 1.5])
    saved = json.loads((run.dir / "posthoc_tau_norm.json").read_text())
    assert saved["tau"] == res["tau"] and res["select_on"] == "val"
    sweep = pd.DataFrame(res["sweep"])
    assert res["tau"] == sweep.tau[sweep.selection_acc.idxmax()]
    # independent check of the test accuracy at the chosen tau: rows W_c / ||W_c||^tau, bias dropped
    model, f, test_ds = _test_features(run)
    w = model.head.weight.detach().double().numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True) ** res["tau"]
    assert res["overall"] == pytest.approx(np.mean((f @ w.T).argmax(1) == test_ds.targets), abs=1e-9)
    on_test = posthoc.tau_normalization(run, taus=[0.0, 1.0], select_on="test", save=False)
    assert on_test["selection_acc"] == max(r["test_acc"] for r in on_test["sweep"])


def _test_features(run):
    """(stage-one model from the checkpoint, float64 features of every test image, test split): rebuilt here,
    independently of ltlab.posthoc, for checking the tau-norm results against the formula."""
    cfg = run_config(run)
    train_ds, test_ds = load_datasets(cfg)
    model = build_model(cfg, train_ds)
    model.load_state_dict(_ckpt(run))
    model.eval()
    x = torch.stack([test_ds[i][0] for i in range(len(test_ds))]).float()
    with torch.no_grad():
        f = model.forward_features((x / 255.0 - test_ds.mean[0]) / test_ds.std[0]).double().numpy()
    return model, f, test_ds


def test_tau_normalization_fixed_tau_keeps_bias_as_bag_of_tricks(stage_one, tmp_path):
    """BagofTricks-LT's tau-norm (TAU 1.0, only classifier.weight rescaled): f @ (W_c / ||W_c||).T + b, scored on
    the test split without a sweep; the same through a run's posthoc config (apply_posthoc)."""
    run = stage_one["ce"]
    res = posthoc.tau_normalization(run, tau=1.0, keep_bias=True, save=False)
    assert res["tau"] == 1.0 and res["keep_bias"] is True and "sweep" not in res
    model, f, test_ds = _test_features(run)
    w = model.head.weight.detach().double().numpy()
    b = model.head.bias.detach().double().numpy()
    want = (f @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T + b).argmax(1)
    assert res["overall"] == pytest.approx(np.mean(want == test_ds.targets), abs=1e-9)
    dropped = posthoc.tau_normalization(run, tau=1.0, save=False)
    assert dropped["overall"] == pytest.approx(np.mean((f @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T)
                                                       .argmax(1) == test_ds.targets), abs=1e-9)
    with pytest.raises(ValueError, match="either tau .* or taus"):
        posthoc.tau_normalization(run, tau=1.0, taus=[0.0, 1.0])
    # the preset form: {method: tau_norm, tau: 1.0, keep_bias: true} validates and runs with the fixed tau
    spec = {"method": "tau_norm", "tau": 1.0, "keep_bias": True}
    RunConfig(**{**run_config(run).to_dict(), "posthoc": spec})
    copy = tmp_path / "ce"
    shutil.copytree(run.dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "run_dir": str(copy), "posthoc": spec}))
    applied = ltlab.posthoc.apply_posthoc(copy)
    assert applied["overall"] == pytest.approx(res["overall"]) and "sweep" not in applied
    assert json.loads((copy / "posthoc_tau_norm.json").read_text())["keep_bias"] is True


def test_results_table_puts_reported_beside_ours(stage_one, tmp_path):
    cfg = run_config(stage_one["ce"]).to_dict()
    run = ltlab.run({**cfg, "epochs": 1, "run_dir": str(tmp_path / "r"), "method": "CE",
                     "reported": {"overall": 40.0, "few": 10.0}})
    t = results_table([run.dir])
    row = t.iloc[0]
    assert row.method == "CE" and row.dataset == "digits_lt" and row.imbalance_factor == 10
    assert row.overall == pytest.approx(100 * run.metrics.acc.iloc[-1])
    assert row.diff_overall == pytest.approx(row.overall - 40.0) and row.reported_few == 10.0
    assert np.isnan(row.reported_many) and np.isnan(row.diff_many)


# ---------------------------------------------------------------------------------------- data
def test_validation_split_is_balanced_disjoint_and_deterministic():
    kw = dict(imbalance_factor=10, n_max=120)
    train = get_dataset("digits_lt", **kw)
    val = get_dataset("digits_lt", split="val", val_per_class=4, **kw)
    assert train.class_counts == [int(120 * 0.1 ** (c / 9)) for c in range(10)]
    assert val.class_counts == [4] * 10 and val.split == "val"
    assert not set(val.source_indices) & set(train.source_indices)
    again = get_dataset("digits_lt", split="val", val_per_class=4, imbalance_factor=2, n_max=120)
    np.testing.assert_array_equal(again.source_indices, val.source_indices)  # independent of the IF
    with pytest.raises(ValueError, match="no room.*n_max <= "):
        get_dataset("digits_lt", split="val", val_per_class=10, imbalance_factor=10)
    partial = get_dataset("digits_lt", split="val", val_per_class=10, imbalance_factor=10, val_policy="available")
    assert partial.class_counts[0] < 10 and partial.class_counts[-1] == 10
    with pytest.raises(ValueError, match="val_per_class"):
        get_dataset("digits_lt", split="val")
    with pytest.raises(ValueError, match="n_max=500 exceeds"):
        get_dataset("digits_lt", imbalance_factor=10, n_max=500)
