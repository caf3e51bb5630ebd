"""Model registry contract, heads against their formulas, CIFAR ResNet structure, torchvision nets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltlab.models import HEADS, MODELS, CosineHead, LinearHead, LWSHead, TukeyHead, create_head, create_model
from ltlab.models.resnet_cifar import BasicBlock, PadShortcut

LIGHT = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "convnet_small", "resnet10", "resnet18"]
HEAVY = {"resnet50": 25_557_032, "resnet152": 60_192_808, "resnext50_32x4d": 25_028_904}  # torchvision, 1000 classes
FEATURE_DIM = {"convnet_small": 128, "resnet10": 512, "resnet18": 512}


def test_registry_lists_every_model():
    assert set(MODELS) == set(LIGHT) | set(HEAVY)
    assert set(HEADS) == {"linear", "linear_nobias", "cosine", "lws", "tukey_linear"}


def _check_contract(model, x, num_classes, dtype):
    feats = model.forward_features(x)
    out = model(x)
    assert feats.shape == (x.shape[0], model.feature_dim) and feats.dtype == dtype
    assert out.shape == (x.shape[0], num_classes) and out.dtype == dtype
    assert torch.isfinite(out).all() and (feats >= 0).all()
    assert model.forward_head(feats, pre_logits=True) is feats
    torch.testing.assert_close(model.forward_head(feats), out)
    F.cross_entropy(out, torch.arange(x.shape[0]) % num_classes).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("name", LIGHT)
def test_model_contract(name, head):
    torch.manual_seed(0)
    in_ch = 1 if name == "convnet_small" else 3
    model = create_model(name, 5, head=head, in_channels=in_ch)
    assert model.num_classes == 5 and model.head_kind == head and isinstance(model.head, HEADS[head])
    assert model.feature_dim == FEATURE_DIM.get(name, 64)
    size = 16 if name in ("resnet10", "resnet18") else 8
    x = torch.randn(3, in_ch, size, size)
    _check_contract(model, x, 5, torch.float32)
    model.zero_grad()
    _check_contract(model.double(), x.double(), 5, torch.float64)
    if head == "cosine":
        out = model(x.double())
        assert out.abs().max() <= 1 + 1e-12


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_torchvision_param_count_and_forward(name):
    model = create_model(name, 1000)
    assert sum(p.numel() for p in model.parameters()) == HEAVY[name]  # torchvision's published counts
    assert model.feature_dim == 2048
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_convnet_small_input_sizes(shape):
    model = create_model("convnet_small", 10, in_channels=shape[0]).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 10)


def _resnet_cifar_param_count(n: int, num_classes: int) -> int:
    """Counted from the architecture description: conv3x3 weights, BN (gamma, beta), linear W + b."""
    conv = lambda cin, cout: 9 * cin * cout  # noqa: E731
    total = conv(3, 16) + 2 * 16
    cin = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += conv(cin, width) + conv(width, width) + 4 * width
            cin = width
    return total + 64 * num_classes + num_classes


def test_resnet32_param_count():
    assert _resnet_cifar_param_count(5, 10) == 464_154  # He et al. Tab. 6: 0.46 M
    for c in (10, 100):
        count = sum(p.numel() for p in create_model("resnet32", c).parameters())
        assert count == _resnet_cifar_param_count(5, c)
    assert abs(count - 0.46e6) < 0.011e6  # C=100: 470,004
    for name, n in (("resnet20", 3), ("resnet56", 9)):
        assert sum(p.numel() for p in create_model(name, 10).parameters()) == _resnet_cifar_param_count(n, 10)


def test_option_a_shortcut():
    x = torch.randn(2, 16, 7, 7)
    out = PadShortcut(32)(x)
    assert out.shape == (2, 32, 4, 4)
    assert (out[:, :8] == 0).all() and (out[:, 24:] == 0).all()
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    block = BasicBlock(16, 32, stride=2)
    assert isinstance(block.shortcut, PadShortcut) and not list(block.shortcut.parameters())
    assert block(x).shape == (2, 32, 4, 4)
    assert isinstance(BasicBlock(16, 16).shortcut, torch.nn.Identity)


def test_resnet_cifar_structure_and_init():
    model = create_model("resnet32", 10)
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [5, 5, 5]
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    # Kaiming-normal (fan_in, gain sqrt(2)): std of the 64->64 convs is sqrt(2 / 576)
    w = torch.cat([b.conv2.weight.flatten() for b in model.layer3])
    assert abs(w.std().item() / np.sqrt(2 / 576) - 1) < 0.05
    assert abs(model.head.weight.std().item() / np.sqrt(2 / 64) - 1) < 0.15


def test_channels_last_matches_contiguous():
    for name in ("resnet32", "convnet_small", "resnet10"):
        torch.manual_seed(0)
        model = create_model(name, 7).eval()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            ref = model(x)
            out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_cosine_head_formula_and_init():
    torch.manual_seed(0)
    head = CosineHead(6, 4).double()
    assert head.weight.shape == (6, 4)
    torch.testing.assert_close(head.weight.norm(dim=0), torch.ones(4, dtype=torch.float64))
    f = torch.randn(5, 6, dtype=torch.float64)
    w = head.weight.detach()
    expected = (f / f.pow(2).sum(1, keepdim=True).sqrt()) @ (w / w.pow(2).sum(0, keepdim=True).sqrt())
    out = head(f)
    torch.testing.assert_close(out, expected)
    assert out.abs().max() <= 1.0 + 1e-12
    with torch.no_grad():
        head.weight.mul_(7.0)  # scale-invariant: the head never applies s
    torch.testing.assert_close(head(f), expected)


def test_lws_from_linear_equals_linear():
    torch.manual_seed(0)
    lin = LinearHead(6, 4).double()
    lws = LWSHead.from_linear(lin)
    f = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(lws(f), f @ lin.weight.detach().t() + lin.bias.detach())
    assert lws.scale.dtype == torch.float64 and (lws.scale == 1).all()
    assert not lws.weight.requires_grad and not lws.bias.requires_grad and lws.scale.requires_grad
    with torch.no_grad():
        lws.scale.copy_(torch.tensor([1.0, 2.0, 0.5, 3.0]))
    s = lws.scale.detach()
    torch.testing.assert_close(lws(f), s * (f @ lin.weight.detach().t() + lin.bias.detach()))  # bias scaled too
    assert LWSHead.from_linear(lin, freeze_linear=False).weight.requires_grad
    with pytest.raises(ValueError, match="nn.Linear"):
        LWSHead.from_linear(CosineHead(6, 4))


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_weight_matrix_is_the_classifier_the_head_applies(kind):
    """``weight_matrix()`` (C, D), what tau-normalisation and the weight-norm figures read, is the classifier the
    head applies: linear family ``head(f) - head(0) = phi(f) @ W^T`` (phi: identity, Tukey's sqrt), cosine
    ``head(f) = normalize(f) @ normalize(W_c)^T``."""
    torch.manual_seed(0)
    head = create_head(kind, 6, 4).double()
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()  # LWS scales away from 1, biases away from 0
    f = torch.rand(5, 6, dtype=torch.float64) + 0.1
    w = head.weight_matrix().detach()
    assert w.shape == (4, 6)
    with torch.no_grad():
        if kind == "cosine":
            expected = F.normalize(f, dim=1) @ F.normalize(w, dim=1).t()
        else:
            phi = f.sqrt() if kind == "tukey_linear" else f
            expected = phi @ w.t() + head(torch.zeros(1, 6, dtype=torch.float64))
        torch.testing.assert_close(head(f), expected)


def test_tukey_head_wraps_the_stage_one_classifier_and_saves_lambda():
    torch.manual_seed(0)
    model = create_model("convnet_small", 4, in_channels=1, width=8)
    linear = model.head
    model.set_head(TukeyHead.from_linear(linear, tukey_lambda=0.25))
    assert model.head.linear is linear and model.head_kind == "tukey_linear"
    f = torch.rand(3, model.feature_dim)
    torch.testing.assert_close(model.forward_head(f), linear(f ** 0.25))
    state = model.state_dict()
    assert float(state["head.tukey_lambda"]) == 0.25
    rebuilt = create_model("convnet_small", 4, head="tukey_linear", in_channels=1, width=8)
    rebuilt.load_state_dict(state)  # the kind and the state dict are all a rebuild needs
    torch.testing.assert_close(rebuilt.forward_head(f), model.forward_head(f))
    with pytest.raises(ValueError, match="LinearHead"):
        TukeyHead.from_linear(LWSHead.from_linear(linear))


def test_reset_classifier_and_set_head():
    model = create_model("resnet20", 10).double()
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    model.reset_classifier(3, head="cosine")
    assert model.num_classes == 3 and model.head_kind == "cosine" and isinstance(model.head, CosineHead)
    assert model.head.weight.dtype == torch.float64
    model.reset_classifier(4)
    assert model.num_classes == 4 and model.head_kind == "cosine"
    for k, v in model.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, backbone[k]), k
    model.reset_classifier(4, head="linear")
    model.set_head(LWSHead.from_linear(model.head))
    assert model.head_kind == "lws" and model.num_classes == 4
    with pytest.raises(ValueError, match="features"):
        model.set_head(LinearHead(32, 4))
    with pytest.raises(ValueError, match="valid heads"):
        model.reset_classifier(4, head="normed")


def test_backbone_parameters_split():
    model = create_model("convnet_small", 10, head="lws")
    backbone = {id(p) for p in model.backbone_parameters()}
    head = {id(p) for p in model.head.parameters()}
    assert backbone and head and not backbone & head
    assert backbone | head == {id(p) for p in model.parameters()}


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="resnet32"):
        create_model("resnet33", 10)
    with pytest.raises(ValueError, match="cosine"):
        create_model("resnet32", 10, head="normed")
    with pytest.raises(ValueError, match="width"):
        create_model("convnet_small", 10, widht=16)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet32", 0)


def test_weights_path_loads_backbone(tmp_path):
    from torchvision.models.resnet import BasicBlock as TVBlock
    from torchvision.models.resnet import ResNet

    ref = ResNet(TVBlock, [1, 1, 1, 1], num_classes=1000)
    path = tmp_path / "r10.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    model = create_model("resnet10", 7, weights_path=path)
    assert torch.equal(model.backbone.conv1.weight, ref.conv1.weight)
    assert torch.equal(model.backbone.layer4[0].bn2.running_var, ref.layer4[0].bn2.running_var)
    torch.save(create_model("resnet18", 7).state_dict(), path)
    with pytest.raises(ValueError, match="does not match"):
        create_model("resnet10", 7, weights_path=path)


@pytest.mark.slow
def test_convnet_small_learns_digits():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(y))
    train, test = perm[:1400], perm[1400:]
    model = create_model("convnet_small", 10, in_channels=1, width=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        for idx in train[torch.randperm(len(train))].split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        acc = (model.eval()(x[test]).argmax(1) == y[test]).float().mean().item()
    assert acc > 0.8  # chance is 0.1


def test_reinit_block_equals_a_freshly_built_block():
    """GCL's Places-LT script trains a new ``Block()`` = Bottleneck(2048, 512) with PyTorch's default init."""
    from torchvision.models.resnet import Bottleneck

    from ltlab.models.torchvision_nets import reinit_block

    torch.manual_seed(3)
    fresh = Bottleneck(2048, 512).state_dict()
    block = Bottleneck(2048, 512)
    with torch.no_grad():
        for t in block.state_dict().values():
            t.fill_(0.5)  # as if loaded from a pretrained ResNet-152
    torch.manual_seed(3)
    reinit_block(block)
    assert all(torch.equal(v, block.state_dict()[k]) for k, v in fresh.items())


def _pretrained_like(path):
    """A resnet10 (1 channel) state_dict unlike any fresh init, saved at ``path``: a stand-in for pretrained weights."""
    state = {k: v + (0.5 if v.is_floating_point() else 7) for k, v in create_model("resnet10", 10, in_channels=1)
             .state_dict().items()}
    torch.save(state, path)
    return state


def test_last_block_option_freezes_the_trunk(tmp_path):
    path = tmp_path / "r10.pth"
    loaded = _pretrained_like(path)
    model = create_model("resnet10", 10, in_channels=1, weights_path=path, trainable="last_block")
    last, trunk = model.backbone.layer4[-1], model._trunk()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in [*last.parameters(), *model.head.parameters()]}
    state = model.state_dict()
    for k in state:
        if k.startswith("backbone.layer4.0."):  # resnet10's last block: re-initialised, BN statistics too
            assert not torch.equal(state[k], loaded[k]), k
        elif not k.startswith("head."):
            assert torch.equal(state[k], loaded[k]), k
    model.train()
    assert not any(m.training for t in trunk for m in t.modules())
    assert last.training and model.head.training
    with pytest.raises(ValueError, match="last_block"):
        create_model("resnet10", 10, trainable="layer4")


@pytest.mark.slow
def test_last_block_option_trains_only_the_block_and_head(tmp_path):
    """One epoch of the one loop: trunk weights and BN statistics bit-identical, optimiser without them."""
    import ltlab
    from ltlab.runs import load_checkpoint

    path = tmp_path / "trunk.pth"
    ref = _pretrained_like(path)
    run = ltlab.run(dataset="digits_lt", imbalance_factor=10, dataset_params={"n_max": 120}, model="resnet10",
                    model_params={"weights_path": str(path), "trainable": "last_block"}, epochs=1, batch_size=64,
                    lr=0.05, device="cpu", progress=False, run_dir=str(tmp_path / "run"))
    ckpt = load_checkpoint(run.dir)
    trained = ckpt["model"]
    block = [k for k in trained if k.startswith("backbone.layer4.0.")]
    head = [k for k in trained if k.startswith("head.")]
    n_block_head = sum(1 for k in block + head if "running_" not in k and "num_batches" not in k)
    assert sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"]) == n_block_head
    for k in set(trained) - set(block) - set(head):
        assert torch.equal(trained[k], ref[k]), k  # frozen trunk in eval mode: weights and statistics untouched
    assert not torch.equal(trained["backbone.layer4.0.conv1.weight"], ref["backbone.layer4.0.conv1.weight"])
    steps = -(-sum(run.config["class_counts"]) // 64)  # the new block trains in train mode: fresh count, every step
    assert int(trained["backbone.layer4.0.bn1.num_batches_tracked"]) == steps


def test_bias_free_linear_head_is_f_times_w_transposed():
    """``head='linear_nobias'``: logits = f W^T exactly, no bias parameter (issue 27: GALA Fig. 1(a) without a
    bias to absorb a per-class shift)."""
    torch.manual_seed(0)
    model = create_model("convnet_small", 7, head="linear_nobias", in_channels=1)
    assert model.head.bias is None and model.head_kind == "linear_nobias"
    assert not any(n.startswith("head.") and n.endswith("bias") for n, _ in model.named_parameters())
    f = torch.randn(5, model.feature_dim, dtype=torch.float64)
    model.double()
    assert torch.allclose(model.forward_head(f), f @ model.head.weight.T)
    lws = LWSHead.from_linear(model.head)  # an LWS around it starts from a zero bias
    assert torch.equal(lws.bias, torch.zeros(7, dtype=torch.float64))
