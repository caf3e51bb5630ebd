"""extract_features / run_features / tsne (ltlab.features): shapes, a manual forward, files, seeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ltlab.features import extract_features, load_run_model, run_features, tsne
from ltlab.models import create_model
from ltlab.runs import RunFileError


@pytest.fixture(scope="module")
def tiny_run(tiny_run_copy):
    return tiny_run_copy("ce")  # tests/conftest.py


def _manual(model, ds):
    """Eval-mode forward of the whole split, normalised by hand: (x / 255 - mean) / std."""
    x = ds.images.double() / 255.0
    mean = torch.tensor(ds.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(ds.std, dtype=torch.float64).view(1, -1, 1, 1)
    m = create_model("convnet_small", ds.num_classes, in_channels=1).double()
    m.load_state_dict(model.state_dict())
    m.eval()
    with torch.no_grad():
        f = m.forward_features((x - mean) / std)
        return f.numpy(), m.forward_head(f).numpy()


def test_extract_shapes_and_manual_forward(digits_ds):
    torch.manual_seed(0)
    model = create_model("convnet_small", digits_ds.num_classes, in_channels=1)
    model.train()
    with torch.no_grad():  # move BN running stats away from their init so eval mode matters
        model(torch.randn(32, 1, 8, 8) * 3 + 1)
    out = extract_features(model, digits_ds, "train", batch_size=100)
    n = len(digits_ds)
    assert out["features"].shape == (n, 128) and out["features"].dtype == np.float32
    assert out["logits"].shape == (n, 10) and out["logits"].dtype == np.float32
    np.testing.assert_array_equal(out["labels"], digits_ds.targets)
    feats, logits = _manual(model, digits_ds)
    np.testing.assert_allclose(out["features"], feats, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-4, atol=1e-4)
    assert model.training  # mode restored


def test_extract_from_run_writes_npz_and_matches_evaluation(tiny_run):
    out = extract_features(None, tiny_run, "test")
    path = tiny_run.dir / "features_test.npz"
    assert path.exists() and not list(tiny_run.dir.glob(".features_test*"))  # atomic: no temp file left
    saved = tiny_run.features("test")
    for k in ("features", "labels", "logits"):
        np.testing.assert_array_equal(saved[k], out[k])
    # the engine's own evaluation logged the same outputs for the last epoch
    np.testing.assert_allclose(out["logits"], tiny_run.per_class["test_logits"], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out["labels"], tiny_run.per_class["test_labels"])
    model, train_ds, test_ds = load_run_model(tiny_run.dir)
    assert not model.training and len(test_ds) == len(out["labels"]) and train_ds.class_counts == tiny_run.class_counts


def test_run_features_missing_names_producer(tiny_run, tmp_path):
    with pytest.raises(RunFileError, match="02_tsne.*extract=True"):
        run_features(tiny_run, "train", extract=False)
    target = tmp_path / "custom.npz"
    out = extract_features(None, tiny_run, "train", save_to=target)
    assert target.exists() and not (tiny_run.dir / "features_train.npz").exists()
    assert out["features"].shape[0] == sum(tiny_run.class_counts)


def test_extract_bad_arguments(digits_ds, tiny_run):
    with pytest.raises(ValueError, match="split"):
        extract_features(None, tiny_run, "val")
    with pytest.raises(ValueError, match="model is None"):
        extract_features(None, digits_ds)


def _blobs(n_per=40, dim=60, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    x = rng.normal(size=(len(y), dim)) + 6.0 * np.eye(classes, dim)[y]
    return x.astype(np.float32), y


@pytest.mark.parametrize("method", ["opentsne", "sklearn"])
@pytest.mark.subprocess
def test_tsne_frame_and_seeding(method):
    if method == "opentsne":
        pytest.importorskip("openTSNE")
    x, y = _blobs()
    preds = y.copy()
    preds[::5] = (preds[::5] + 1) % 4
    counts = [150, 60, 30, 5]
    a = tsne(x, y, class_counts=counts, preds=preds, perplexity=10, method=method, n_jobs=1)
    b = tsne(x, y, class_counts=counts, preds=preds, perplexity=10, method=method, n_jobs=1)
    assert list(a.columns) == ["x", "y", "label", "group", "index", "pred", "correct", "silhouette"]
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_samples
    z = PCA(n_components=50, random_state=0).fit_transform(x).astype(np.float32)  # the t-SNE input
    np.testing.assert_allclose(a["silhouette"], silhouette_samples(z, y), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy())
    expected_group = np.array(["many", "medium", "medium", "few"], dtype=object)[y]
    assert (a["group"].to_numpy() == expected_group).all()
    np.testing.assert_array_equal(a["correct"].to_numpy(dtype=bool), preds == y)
    # separated blobs stay separated: each point's nearest embedded neighbour shares its class
    e = a[["x", "y"]].to_numpy()
    d = ((e[:, None] - e[None]) ** 2).sum(-1) + np.eye(len(e)) * 1e9
    assert (y[d.argmin(1)] == y).mean() > 0.95


def test_tsne_subset_defaults_and_errors():
    x, y = _blobs(dim=8)
    df = tsne(x, y, max_points=60, perplexity=5, method="opentsne" if _has_opentsne() else "sklearn", n_jobs=1)
    assert len(df) == 60 and (np.diff(df["index"]) > 0).all()
    np.testing.assert_array_equal(df["label"], y[df["index"]])
    assert (df["group"] == "unknown").all() and df["correct"].isna().all()
    with pytest.raises(ValueError, match="perplexity"):
        tsne(x[:20], y[:20], perplexity=30)
    with pytest.raises(ValueError, match="method"):
        tsne(x, y, method="umap")
    with pytest.raises(ValueError, match="labels"):
        tsne(x, y[:-1])


def _has_opentsne() -> bool:
    try:
        import openTSNE  # noqa: F401
        return True
    except ImportError:
        return False
