"""Training speed: ltlab's loop against the standard research loop, in one process run (issue 8).

    .venv/bin/python benchmarks/bench_train.py [--device cpu|cuda] [--images N] [--epochs E]
                                               [--batch-size 128] [--quick] [--workers 2] [--threads T]

CPU (default): ResNet-32 (100 classes), batch 128, CIFAR-shaped random uint8 images. Each configuration
gets its own model (same init) and runs one warm-up pass (2 full batches + the last partial batch,
excluded); then ``--epochs`` rounds, and in every round each configuration trains one epoch, so a
change in machine load hits all of them alike. Per configuration the table gives the median epoch
time and its range over rounds, images/s, CPU seconds per epoch (the process plus its DataLoader
workers), the epoch time divided by the reference loop's in the same round (median over rounds), and
peak memory: what building the configuration and its warm-up pass add to a fresh interpreter
(proportional set size of the process and its workers, sampled every 20 ms; measured after the timed
rounds in a subprocess per configuration, because sampling /proc slows training and freed memory
would otherwise be reused by the next configuration). Targets: fp32 <= 0.70 x, bf16 <= 0.50 x.

  * ``reference``: benchmarks/reference_loop.py (PIL per image in ``--workers`` DataLoader workers,
    NCHW fp32, SGD with default kernels, per-batch ``.item()`` meters), as the official repos train.
    ``reference workers=0`` is the same loop with the images decoded in the main process (faster than
    2 workers on a 2-core machine, where workers and compute threads compete); ratios stay against
    ``reference``.
  * ``ltlab <precision>[ channels_last]``: ``ltlab.engine.train_one_epoch`` over a ``DeviceLoader``
    (uint8 data resident on the device, batched crop/flip) with the gradient probe that ``fit`` always
    attaches, SGD ``foreach=True``; fp16 is left out on CPU (see benchmarks/README.md).

CUDA (``--device cuda``): 200 epochs on a CIFAR-100-LT-sized synthetic set (10,847 train images,
10,000 test images, crop 4 + flip), end to end through ``ltlab.engine.fit`` (evaluation every 10
epochs, probes, run files, checkpoints; compile time included) for fp32, bf16 + channels_last, and
bf16 + channels_last + ``torch.compile``, then the reference loop for ``--ref-epochs`` epochs
(default 20, two evaluations; ``--ref-epochs 200`` runs it all) with the same evaluation schedule,
extrapolated linearly to ``--epochs`` and marked so. Targets: <= 90 s without compile, <= 30 s with
compile. ``--end-to-end`` runs this mode on ``--device cpu`` (a check of the code path).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference_loop as ref  # noqa: E402

from ltlab.data import DeviceLoader, LTDataset  # noqa: E402
from ltlab.data.sources import CIFAR_MEAN, CIFAR_STD  # noqa: E402
from ltlab.engine import TrainState, train_one_epoch  # noqa: E402
from ltlab.losses import create_loss  # noqa: E402
from ltlab.models import create_model  # noqa: E402
from ltlab.probes import GradientProbe  # noqa: E402

AUGMENT = {"crop_padding": 4, "flip": True}  # CIFAR recipe (LDAM-DRW)
CPU_CONFIGS = ["reference", "reference workers=0", "ltlab fp32", "ltlab fp32 channels_last", "ltlab bf16",
               "ltlab bf16 channels_last"]
QUICK_CONFIGS = ["reference", "reference workers=0", "ltlab fp32", "ltlab fp32 channels_last",
                 "ltlab bf16 channels_last"]
TARGETS = {"fp32": 0.70, "bf16": 0.50}


# ---------------------------------------------------------------------------- measuring
def cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (DataLoader workers are joined every epoch)."""
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _pss_mib(pid: int) -> float:
    """Proportional set size of one process (Linux /proc; shared pages split between their users)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


class MemorySampler:
    """Peak memory of a block: CUDA ``max_memory_allocated``; CPU the PSS of this process and its
    children sampled every ``interval`` s, minus the process's PSS at entry (``peak_mib``, MiB)."""

    def __init__(self, device: torch.device, interval: float = 0.02) -> None:
        import os
        import threading
        self.device, self.interval, self.pid = device, interval, os.getpid()
        self.peak_mib, self._stop, self._thread = 0.0, threading.Event(), None
        self._proc = Path("/proc/self/smaps_rollup").exists()

    def _sample(self) -> float:
        return _pss_mib(self.pid) + sum(_pss_mib(c) for c in _children(self.pid))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._sample())

    def __enter__(self) -> "MemorySampler":
        import threading
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._proc:
            self._base = self._peak = self._sample()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mib = max(self._peak, self._sample()) - self._base
        else:  # no /proc: the process's lifetime peak RSS
            import resource
            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_isa() -> str:
    """The CPU kernels torch uses and whether the CPU has the matrix units that make bf16 fast (AMX)."""
    try:
        flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "").split()
    except OSError:
        flags = []
    bf16 = "amx_bf16" if "amx_bf16" in flags else ("avx512_bf16 (no AMX)" if "avx512_bf16" in flags else "no bf16 units")
    return f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {bf16}"


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def ltlab_state(model: str, num_classes: int, class_counts, device: torch.device, channels_last: bool,
                compile_model: bool = False) -> TrainState:
    """Model, CE loss and SGD (``ltlab.engine.make_sgd``) built as ``ltlab.engine.run`` builds them (seed 0).

    CE ignores ``class_counts`` (clipped at 1 so that a shortened set with empty classes builds)."""
    torch.manual_seed(0)
    net = create_model(model, num_classes).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    from ltlab.config import RunConfig
    from ltlab.engine import make_sgd
    opt = make_sgd(net.parameters(), RunConfig(lr=0.1, momentum=0.9, weight_decay=2e-4), device)
    state = TrainState(model=net, loss_fn=create_loss("ce", [max(int(c), 1) for c in class_counts]).to(device), optimizer=opt)
    if compile_model:
        state.model = torch.compile(net)
    return state


# ---------------------------------------------------------------------------- CPU epochs
def random_cifar(n: int, num_classes: int = 100, seed: int = 0) -> LTDataset:
    """n random uint8 images (n, 3, 32, 32) with labels cycling over the classes; CIFAR normalisation."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return LTDataset("random_cifar", "train", x, np.arange(n) % num_classes, [str(c) for c in range(num_classes)],
                     CIFAR_MEAN, CIFAR_STD, AUGMENT)


class RefRunner:
    """The reference loop on ``ds``: own model, optimiser and DataLoader (workers start every epoch)."""

    def __init__(self, ds: LTDataset, batch_size: int, device: torch.device, workers: int, num_classes: int):
        torch.manual_seed(0)
        self.device, self.bs, self.workers = device, batch_size, workers
        self.model = create_model("resnet32", num_classes).to(device)
        self.opt = ref.make_optimizer(self.model)
        tf = ref.train_transform(32, 4, ds.mean, ds.std)
        self.data = ref.ArrayImageDataset(ref.hwc(ds.images), ds.targets, tf)
        self.loader = ref.make_loader(self.data, batch_size, train=True, num_workers=workers, device=device)

    def warmup(self) -> None:
        n = len(self.data)
        idx = list(range(2 * self.bs)) + list(range(2 * self.bs, 2 * self.bs + n % self.bs))
        sub = torch.utils.data.Subset(self.data, idx[:n])
        ref.train_epoch(self.model, ref.make_loader(sub, self.bs, train=True, num_workers=self.workers,
                                                    device=self.device), self.opt, self.device)

    def epoch(self, epoch: int) -> None:
        ref.train_epoch(self.model, self.loader, self.opt, self.device)


class LtlabRunner:
    """ltlab's loop: DeviceLoader + train_one_epoch (+ GradientProbe, as ``fit`` runs it)."""

    def __init__(self, ds: LTDataset, batch_size: int, device: torch.device, precision: str,
                 channels_last: bool, num_classes: int, compile_model: bool = False):
        self.device, self.precision, self.bs, self.num_classes = device, precision, batch_size, num_classes
        self.ds, self.channels_last = ds, channels_last
        self.state = ltlab_state("resnet32", num_classes, ds.class_counts, device, channels_last, compile_model)
        self.loader = DeviceLoader(ds, batch_size, device=device, train=True, channels_last=channels_last)

    def _run(self, loader: DeviceLoader) -> dict:
        probe = GradientProbe(self.num_classes, self.device)
        return train_one_epoch(self.state, loader, device=self.device, precision=self.precision, probe=probe)

    def warmup(self) -> None:
        n = len(self.ds)
        sub = self.ds.subset(np.arange(min(n, 2 * self.bs + n % self.bs)))
        self._run(DeviceLoader(sub, self.bs, device=self.device, train=True, channels_last=self.channels_last))

    def epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)
        self._run(self.loader)


def make_runner(name: str, ds, args, device):
    if name == "reference":
        return RefRunner(ds, args.batch_size, device, args.workers, args.num_classes)
    if name.startswith("reference workers="):
        return RefRunner(ds, args.batch_size, device, int(name.split("=")[1]), args.num_classes)
    parts = name.split()
    if parts[0] != "ltlab" or parts[1] not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown configuration {name!r}; valid: {CPU_CONFIGS}")
    return LtlabRunner(ds, args.batch_size, device, parts[1], "channels_last" in parts, args.num_classes,
                       compile_model="compile" in parts)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_memory(args, name: str, device: torch.device) -> float:
    """Peak memory (MiB) that building configuration ``name`` and its warm-up pass add to this process."""
    ds = random_cifar(args.images, args.num_classes)
    with MemorySampler(device) as mem:
        make_runner(name, ds, args, device).warmup()
    return mem.peak_mib


def memory_in_subprocess(args, name: str) -> float:
    """:func:`probe_memory` in a fresh interpreter, so no configuration sees memory another one freed."""
    import json
    import subprocess
    cmd = [sys.executable, __file__, "--memory-probe", name, "--images", str(args.images), "--batch-size",
           str(args.batch_size), "--workers", str(args.workers), "--num-classes", str(args.num_classes)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"memory probe of {name!r} failed: {out.stderr.strip()[-500:]}", file=sys.stderr)
        return float("nan")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])


def bench_epochs(args, device: torch.device) -> None:
    import os
    configs = QUICK_CONFIGS if args.quick and not args.configs else (args.configs or CPU_CONFIGS)
    configs = ["reference"] + [c for c in configs if c != "reference"]
    load0 = os.getloadavg()[0]
    ds = random_cifar(args.images, args.num_classes)
    runners = {name: make_runner(name, ds, args, device) for name in configs}
    for name, r in runners.items():  # warm-up (oneDNN primitive caches, allocator, DataLoader start-up)
        t0 = time.perf_counter()
        r.warmup()
        _sync(device)
        print(f"warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    wall = {n: [] for n in configs}
    cpu = {n: [] for n in configs}
    for e in range(args.epochs):
        for name, r in runners.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            r.epoch(e)
            _sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(cpu_seconds() - c0)
        print(f"round {e + 1}/{args.epochs}: " + ", ".join(f"{n} {wall[n][-1]:.2f} s" for n in configs), flush=True)
    del runners
    mem = {name: memory_in_subprocess(args, name) for name in configs} if not args.no_memory else {}
    rows = []
    for name in configs:
        med = statistics.median(wall[name])
        ratio = statistics.median(w / r for w, r in zip(wall[name], wall["reference"]))
        prec = name.split()[1] if name.startswith("ltlab") else None
        target = f"<= {TARGETS[prec]:.2f} {'met' if ratio <= TARGETS[prec] else 'MISSED'}" if prec in TARGETS else ""
        rows.append([name, f"{args.images / med:,.0f}", f"{med:.2f}", f"{min(wall[name]):.2f}-{max(wall[name]):.2f}",
                     f"{statistics.median(cpu[name]):.2f}", f"{ratio:.2f}", target, f"{mem.get(name, float('nan')):,.0f}"])
    print(f"\nResNet-32, {args.images} images of 3x32x32, batch {args.batch_size}, {args.epochs} rounds, "
          f"device {device}, torch threads {torch.get_num_threads()}, reference workers {args.workers}, "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}; {cpu_isa()}")
    print(fmt_table(["config", "images/s", "epoch s", "range s", "CPU s", "x ref", "target", "peak MiB"], rows))


# ---------------------------------------------------------------------------- CUDA end to end
def synthetic_cifar100_lt(n_train: int | None = None, n_test_per_class: int = 100):
    """CIFAR-100-LT-sized synthetic set: 100 classes, 500 -> 5 per class (10,847), 10,000 balanced test."""
    from ltlab.data import get_dataset
    kw = dict(num_classes=100, n_max=500, image_size=32, channels=3, n_test_per_class=n_test_per_class)
    train = get_dataset("synthetic_lt", split="train", imbalance_factor=100, **kw)
    test = get_dataset("synthetic_lt", split="test", **kw)
    if n_train is not None and n_train < len(train):
        train = train.subset(np.arange(n_train))
    train.augment = dict(AUGMENT)  # synthetic_lt has none; the benchmark trains with the CIFAR recipe
    return train, test


def _schedule(epochs: int) -> dict:
    """LDAM-DRW's recipe scaled to ``epochs``: 5 warm-up epochs, steps at 80% and 90% (160/180 of 200)."""
    return dict(lr=0.1, warmup_epochs=min(5, epochs - 1), milestones=[int(0.8 * epochs), int(0.9 * epochs)])


def ltlab_end_to_end(train, test, args, device, precision: str, channels_last: bool, compile_model: bool | str,
                     run_dir: Path) -> tuple[float, float, list[float]]:
    """``ltlab.engine.fit`` for ``args.epochs`` epochs (eval every 10); (seconds, final acc, epoch ends)."""
    from ltlab.config import RunConfig
    from ltlab.engine import fit
    cfg = RunConfig(dataset="synthetic_lt", model="resnet32", epochs=args.epochs, batch_size=args.batch_size,
                    eval_every=10, precision=precision, channels_last=channels_last, compile=compile_model,
                    device=device.type, progress=False, run_dir=str(run_dir), **_schedule(args.epochs))
    ends: list[float] = []
    _sync(device)
    t0 = time.perf_counter()
    state = ltlab_state("resnet32", 100, train.class_counts, device, channels_last)
    fit(state, cfg, train, test, run_dir, device, [lambda *a: ends.append(time.perf_counter() - t0)])
    _sync(device)
    return time.perf_counter() - t0, float(state.metrics[-1]["acc"]), ends


def reference_end_to_end(train, test, args, device) -> tuple[float, float, int]:
    """The reference loop for ``--ref-epochs`` epochs (eval every 10); (seconds, last acc, epochs run)."""
    torch.manual_seed(0)
    model = create_model("resnet32", 100)
    tr = ref.ArrayImageDataset(ref.hwc(train.images), train.targets, ref.train_transform(32, 4, train.mean, train.std))
    te = ref.ArrayImageDataset(ref.hwc(test.images), test.targets, ref.eval_transform(test.mean, test.std))
    n = min(args.ref_epochs or 20, args.epochs)
    _sync(device)
    t0 = time.perf_counter()
    rows = ref.fit_reference(model, tr, te, epochs=args.epochs, batch_size=args.batch_size, eval_every=10,
                             num_workers=args.workers, device=device, max_epochs=n, **_schedule(args.epochs))
    _sync(device)
    return time.perf_counter() - t0, rows[-1]["acc"] if rows else float("nan"), n


def bench_end_to_end(args, device: torch.device) -> None:
    import tempfile
    args.epochs = args.epochs or 200
    torch.backends.cudnn.benchmark = True  # as the official scripts set it
    train, test = synthetic_cifar100_lt(args.images, args.test_per_class)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}: {len(train)} train / {len(test)} test images, "
          f"{args.epochs} epochs, eval every 10, batch {args.batch_size}", flush=True)
    configs = [("ltlab fp32", "fp32", False, False), ("ltlab bf16 channels_last", "bf16", True, False)]
    if not args.no_compile:
        configs += [("ltlab bf16 channels_last compile", "bf16", True, True),
                    ("ltlab bf16 channels_last compile reduce-overhead", "bf16", True, "reduce-overhead")]
    wanted = args.only or [c[0] for c in configs] + ["reference"]
    configs = [c for c in configs if c[0] in wanted]
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, prec, cl, comp) in enumerate(configs):
            with MemorySampler(device) as mem:
                sec, acc, ends = ltlab_end_to_end(train, test, args, device, prec, cl, comp, Path(tmp) / f"run{i}")
            results[name] = (sec, acc, mem.peak_mib, f"first epoch {ends[0]:.1f} s, then "
                                                     f"{(ends[-1] - ends[0]) / max(len(ends) - 1, 1):.3f} s/epoch")
            print(f"{name}: {sec:.1f} s, acc {acc:.3f}", flush=True)
    full = None
    if "reference" in wanted:
        with MemorySampler(device) as mem:
            sec, acc, n = reference_end_to_end(train, test, args, device)
        full = sec * args.epochs / n
        note = "measured" if n == args.epochs else f"{n} epochs measured, x{args.epochs / n:.1f} extrapolated"
        results = {"reference": (full, acc, mem.peak_mib, note), **results}
    for name, (sec, acc, peak, note) in results.items():
        target = "<= 30" if "compile" in name else ("<= 90" if name != "reference" else "")
        rows.append([name, f"{args.epochs * len(train) / sec:,.0f}", f"{sec:.1f}", f"{sec / args.epochs:.3f}",
                     f"{sec / full:.2f}" if full else "-", target, f"{peak:,.0f}", f"{acc:.3f}", note])
    print(fmt_table(["config", "images/s", "total s", "epoch s", "x ref", "target s", "peak MiB", "acc", "note"],
                    rows))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--images", type=int, default=None, help="training images (cpu: 2560, quick 1024; cuda: 10847)")
    p.add_argument("--epochs", type=int, default=None, help="timed rounds (cpu: 3, quick 3) or epochs (cuda: 200)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="small sizes for `make bench` (a few minutes on 2 cores)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--configs", nargs="+", default=None, help=f"subset of {CPU_CONFIGS}")
    p.add_argument("--ref-epochs", type=int, default=None,
                   help="cuda: epochs of the reference loop, extrapolated to --epochs (default 20)")
    p.add_argument("--test-per-class", type=int, default=100, help="cuda: test images per class (100 as CIFAR-100)")
    p.add_argument("--no-compile", action="store_true", help="cuda: skip the torch.compile configurations")
    p.add_argument("--only", nargs="+", default=None,
                   help="cuda: run only these configurations (names as printed; 'reference' for the reference loop)")
    p.add_argument("--end-to-end", action="store_true", help="run the cuda benchmark on --device cpu (checks)")
    p.add_argument("--no-memory", action="store_true", help="cpu: skip the peak-memory probes")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_probe:
        import json
        print(json.dumps({"peak_mib": probe_memory(args, args.memory_probe, device)}))
        return
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but no CUDA device is visible")
    if device.type == "cuda" or args.end_to_end:
        bench_end_to_end(args, device)
        return
    args.images = args.images or (1024 if args.quick else 2560)
    args.epochs = args.epochs or 3
    bench_epochs(args, device)


if __name__ == "__main__":
    main()
