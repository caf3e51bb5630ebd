"""Multi-process training (issue 9): sharded sampling, 2 gloo ranks == 1 process, torchrun CLI + resume.

Exactness needs a model whose batch statistics do not depend on how a global batch is split: BatchNorm
in training mode normalises with each rank's local batch (SyncBatchNorm runs on CUDA only). So the
equivalence runs train a classifier on a frozen backbone kept in eval mode (``stage="classifier"``,
``backbone_mode="eval"``, the GCL/GLAG stage two), with ``augment=False`` (per-rank augmentation draws
cannot match the single-process ones). Both are documented in docs/multi_gpu.md.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import ltlab
from ltlab.data import create_sampler
from ltlab.data.samplers import ShardedSampler
from ltlab.distributed import DistContext, local_batch_size
from ltlab.engine.trainer import _check_distributed
from ltlab.runs import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(dataset="synthetic_lt", dataset_params={"num_classes": 4, "n_max": 40}, imbalance_factor=4,
            model="convnet_small", model_params={"width": 8}, batch_size=16, lr=0.05, device="cpu",
            progress=False, augment=False)  # 90 training images (40, 25, 15, 10), 80 test images


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp") / "stage_one"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ltlab.run({**BASE, "epochs": 1, "run_dir": str(d)})
    torch.set_num_threads(before)
    return d


def _stage_two(stage_one, **kw):
    # batch 14: 90 = 6 * 14 + 6, so the last global batch is partial (3 items per rank)
    return {**BASE, "stage": "classifier", "init_from": str(stage_one), "epochs": 3, "batch_size": 14, **kw}


# ---------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("name,kw", [(None, {}), ("class_balanced", {}), ("class_aware", {"num_samples_cls": 2}),
                                     ("progressive", {"num_epochs": 3})])
@pytest.mark.parametrize("world,batch", [(2, 8), (3, 9), (4, 8)])
def test_shards_of_each_global_batch_are_the_single_process_batch(name, kw, world, batch):
    targets = np.repeat(np.arange(4), [13, 7, 4, 2])  # N = 26: the last global batch is partial
    base = (lambda: None) if name is None else (lambda: create_sampler(name, targets, seed=3, **kw))
    ranks = [ShardedSampler(base(), len(targets), rank=r, world_size=world, batch_size=batch, seed=3,
                            targets=targets) for r in range(world)]
    single = create_sampler(name, targets, seed=3, **kw) if name else None
    for epoch in (0, 2):
        for s in ranks:
            s.set_epoch(epoch)
        if single is None:  # DeviceLoader's own permutation for (seed, epoch)
            from ltlab.data.loaders import _mix_seed
            order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(_mix_seed(3, epoch))).tolist()
        else:
            single.set_epoch(epoch)
            order = list(single)
        shards = [list(s) for s in ranks]
        local = batch // world
        assert len({len(sh) for sh in shards}) == 1 and all(len(s) == len(sh) for s, sh in zip(ranks, shards))
        for t, start in enumerate(range(0, len(order), batch)):
            glob = order[start:start + batch]
            k = len(glob) // world  # equal local batches; the last batch drops len % world items
            union = [i for sh in shards for i in sh[t * local:t * local + k]]
            assert union == glob[:world * k]
        np.testing.assert_allclose(ranks[0].class_probs, single.class_probs if single else
                                   np.bincount(targets) / len(targets))


def test_global_batch_must_divide_and_unsupported_setups_are_refused():
    assert local_batch_size(64, DistContext(1, 4)) == 16
    with pytest.raises(ValueError, match="batch_size=30 is the global batch.*divisible.*4"):
        local_batch_size(30, DistContext(0, 4))
    with pytest.raises(ValueError, match="sync_bn=True needs CUDA"):
        _check_distributed(ltlab.RunConfig(sync_bn=True, device="cpu"), DistContext(0, 2), torch.device("cpu"))
    _check_distributed(ltlab.RunConfig(sync_bn=True, batch_size=30), DistContext(), torch.device("cpu"))  # 1 process


# ---------------------------------------------------------------------- 2 gloo ranks == 1 process
def _worker(rank: int, world: int, init_file: str, jobs: list[dict]) -> None:
    import torch.distributed as dist

    import ltlab.runs
    import ltlab.runs.files
    torch.set_num_threads(1)
    if rank > 0:  # only rank 0 may write the run directory
        def refuse(path, *a, **k):
            raise AssertionError(f"rank {rank} wrote {path}")
        # the defining module (write_json, save_torch, ... call it there) and the package's re-export
        ltlab.runs.files.atomic_write_bytes = ltlab.runs.atomic_write_bytes = refuse
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for cfg in jobs:
            ltlab.run(cfg)
    finally:
        dist.destroy_process_group()


def _assert_same_run(single: Path, multi: Path, state_keys: tuple[str, ...]) -> None:
    a, b = ltlab.load_run(single), ltlab.load_run(multi)
    cols = ["epoch", "lr", "train_loss", "acc", "acc_many", "acc_medium", "acc_few"]
    pd.testing.assert_frame_equal(a.metrics[cols], b.metrics[cols], rtol=1e-5, atol=0)
    np.testing.assert_allclose(a.per_class["test_logits"], b.per_class["test_logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.per_class["test_labels"], b.per_class["test_labels"])
    for k in ("grad_pos", "grad_neg", "grad_neg_by_source", "grad_pos_cum", "grad_neg_cum", "grad_neg_by_source_cum",
              "grad_pos_cumcum", "grad_neg_cumcum", "grad_pos_steps", "grad_neg_cumcum_steps"):  # per-rank sums / W
        np.testing.assert_allclose(a.probes[k], b.probes[k], rtol=1e-5, atol=1e-9, err_msg=k)
    ca, cb = load_checkpoint(single), load_checkpoint(multi)
    for k in state_keys:  # the stateful loss holds the single-process state on the saved rank
        torch.testing.assert_close(ca["loss"][k], cb["loss"][k], rtol=1e-5, atol=1e-7, msg=k)
    for k, v in ca["model"].items():
        assert not k.startswith("module."), "the checkpoint holds the unwrapped model"
        torch.testing.assert_close(v, cb["model"][k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.subprocess
def test_two_gloo_ranks_match_one_process(stage_one, tmp_path):
    import torch.multiprocessing as mp
    mp.set_forkserver_preload(["ltlab.engine", "torch._dynamo"])  # import once, fork the ranks from there
    ghm = {"ghm_cwap": {"bins": 5},  # sum W CE / sum W: the batch's sum W is all-reduced as well
           "ghm_cwap_old": {"bins": 5, "weight_norm": "none", "empty_bin": "density", "reduction": "mean"},
           "ghm_cwap_margins": {"bins": 5, "use_weights": False}}
    jobs = {"gala": _stage_two(stage_one, loss="gala"),
            **{k: _stage_two(stage_one, loss="ghm_cwap", loss_params=p, sampler="class_balanced") for k, p in ghm.items()}}
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), [{**cfg, "run_dir": str(tmp_path / f"{n}_ddp")}
                                                                   for n, cfg in jobs.items()]),
                       nprocs=2, join=True, start_method="forkserver")
    for name, cfg in jobs.items():
        ltlab.run({**cfg, "run_dir": str(tmp_path / f"{name}_one")})
    assert ltlab.load_run(tmp_path / "gala_ddp").config["world_size"] == 2
    _assert_same_run(tmp_path / "gala_one", tmp_path / "gala_ddp", ("A", "P", "N"))
    for name in ghm:
        _assert_same_run(tmp_path / f"{name}_one", tmp_path / f"{name}_ddp",
                         ("counts", "widths", "frozen_counts", "frozen_widths", "has_frozen"))


# ---------------------------------------------------------------------- torchrun CLI, resumed mid-epoch
@pytest.mark.subprocess
def test_torchrun_resumes_a_single_process_run_mid_epoch(stage_one, tmp_path):
    """``torchrun --nproc_per_node=2 -m ltlab train --preset ... -p resume True`` continues a 1-process run
    from a mid-epoch checkpoint (global batch and order are independent of the number of processes)."""
    cfg = _stage_two(stage_one, loss="gala", checkpoint_every_steps=2)
    full = ltlab.run({**cfg, "run_dir": str(tmp_path / "full")})
    part = tmp_path / "part"
    shutil.copytree(full.dir, part)
    shutil.copy(part / "checkpoint_prev.pt", part / "checkpoint.pt")  # newest = epoch 2, step 6 of 7
    pos = load_checkpoint(part)["position"]
    assert (pos["epoch"], pos["step"]) == (2, 6)
    m = pd.read_csv(part / "metrics.csv")  # what a kill there leaves: the last epoch not in metrics.csv yet
    m[m.epoch < pos["epoch"]].to_csv(part / "metrics.csv", index=False)
    (tmp_path / "preset.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "ltlab", "train", "--preset",
                          str(tmp_path / "preset.yaml"), "-p", "run_dir", str(part), "-p", "resume", "True"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("run directory:") == 1  # rank 0 alone prints the summary
    _assert_same_run(full.dir, part, ("A", "P", "N"))
