"""Learning-rate schedules against the official formulas, and the GALA presets against the official scheduler."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from ltlab.launch.cli import read_preset
from ltlab.config import RunConfig
from ltlab.data import longtail_counts
from ltlab.schedules import lr_at

ROOT = Path(__file__).resolve().parent.parent


def official_gala_lr(e: int, peak: float, num_epochs: int, warmup: int, start: float) -> float:
    """``CosineAnnealingLRWarmup.get_lr`` of lt-project-repository/lt-peoject ``utils.py`` (BALMS code), eta_min 0.

    ``e`` is its ``last_epoch``: the training loop steps the scheduler before each epoch, so the first
    epoch runs at ``e = 1``; ``start`` is the config's ``base_lr``, ``peak`` its ``warmup_lr``.
    """
    if e < warmup:
        return (peak - start) / (warmup - 1) * (e - 1) + start
    return peak * (1 + math.cos(math.pi * (e - warmup) / (num_epochs - warmup))) / 2


@pytest.mark.parametrize("warmup,epochs", [(2, 200), (5, 30), (3, 7)])
def test_balms_cosine_is_the_official_gala_scheduler(warmup, epochs):
    ours = [lr_at(t, 0.1, epochs, warmup_epochs=warmup, schedule="balms_cosine") for t in range(epochs)]
    theirs = [official_gala_lr(t + 1, 0.1, epochs, warmup, 0.05) for t in range(epochs)]
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert ours[warmup - 1] == pytest.approx(0.1) and ours[-1] == pytest.approx(0.0, abs=1e-15)


def test_ldam_warmup_holds_the_peak_for_one_more_epoch():
    """The LDAM-DRW warm-up (``cosine``) differs from the official GALA schedule; the reason for balms_cosine."""
    ldam = [lr_at(t, 0.1, 200, warmup_epochs=2, schedule="cosine") for t in range(4)]
    assert ldam == pytest.approx([0.05, 0.1, 0.1, 0.05 * (1 + math.cos(math.pi / 197))])
    assert lr_at(0, 0.1, 10, warmup_epochs=0, schedule="balms_cosine") == lr_at(0, 0.1, 10, schedule="cosine")
    with pytest.raises(ValueError, match="balms_cosine"):
        lr_at(0, 0.1, 10, schedule="poly")


@pytest.mark.parametrize("imf", [200, 100, 50, 10])
@pytest.mark.parametrize("kind", ["gala", "gala_pn"])
def test_gala_cifar_presets_follow_the_official_lr(kind, imf):
    """The code sets W = ceil(200 warm-up iterations / iterations per epoch) (config BaGMar_pn_imba100.yaml)."""
    (params,) = read_preset(ROOT / f"notebooks/presets/{kind}_cifar100_if{imf}.yaml")
    cfg = RunConfig(**params)
    iters = sum(longtail_counts(500, 100, imf)) // cfg.batch_size  # the code drops the last partial batch
    official_w = math.ceil(200 / iters)
    assert cfg.lr_schedule == "balms_cosine" and cfg.lr == 0.1
    # IF 10: W = ceil(200 / 305) = 1 fails the code's `assert warmup_epochs >= 2`; the preset keeps the config's 2
    assert cfg.warmup_epochs == (official_w if imf != 10 else 2)
    ours = [lr_at(t, cfg.lr, cfg.epochs, warmup_epochs=cfg.warmup_epochs, schedule=cfg.lr_schedule)
            for t in range(cfg.epochs)]
    theirs = [official_gala_lr(t + 1, 0.1, 200, cfg.warmup_epochs, 0.05) for t in range(200)]
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
