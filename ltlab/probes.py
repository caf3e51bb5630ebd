"""What the training loop records each epoch, cheaply (no extra backward pass, no per-batch host sync).

* Gradient statistics. After the ordinary backward the loop reads ``g = dL/dz`` (B, C), the gradient of
  the batch-mean loss w.r.t. the classifier outputs. For classifier c, one batch gives the positive
  gradient ``pos_c = sum_{i: y_i = c} |g_ic|`` (its own samples) and the negative gradient
  ``neg_c = sum_{i: y_i != c} |g_ic|`` (the other classes' samples); ``neg_by_source[c, k]`` is the part
  of ``neg_c`` sent by samples of class k. Three statistics of pos / neg are kept, each per class:

  - *per epoch* (``grad_pos``, ``grad_neg``, ``grad_ratio``, ``grad_neg_by_source``): sums over one epoch;
  - *accumulated from step 0* (``grad_pos_cum``, ``grad_neg_cum``, ``grad_ratio_cum``,
    ``grad_neg_by_source_cum``): ``S_c(T) = sum_{t <= T}`` over every step so far, the "ratio of
    accumulated positive to negative gradients" of Seesaw (Wang et al. 2021, Fig. 1) and GALA (paper
    003, Fig. 1(b-c));
  - *GALA code* (``grad_pos_cumcum``, ``grad_neg_cumcum``, ``grad_ratio_cumcum``): ``sum_{t <= T} S_c(t)``,
    the running sum of running sums the official GALA code accumulates per batch, which
    counts a batch once for every later batch and so weights the first steps most.

  Read them knowing that for a softmax loss with a classifier bias ``dL/db_c = neg_c - pos_c`` exactly:
  summed over any stretch of SGD, ``neg - pos`` is about ``-(b_end - b_start) / lr`` (bounded) while
  ``pos`` and ``neg`` grow, so every ratio of sums over a long stretch tends to 1 for every class and
  every loss. The imbalance the papers describe lives in the early transient (at initialisation
  ``pos_c / neg_c = n_c (C - 1) / (N - n_c)``): epoch 1 is also recorded at step resolution
  (``grad_steps`` = fraction of epoch 1 done, ``grad_pos_steps``, ``grad_neg_steps``,
  ``grad_pos_cumcum_steps``, ``grad_neg_cumcum_steps`` (K, C), after about ``STEP_MARKS`` evenly spaced
  steps).
  The (C, C) matrices are kept for up to ``MATRIX_MAX_CLASSES`` classes (CIFAR-100: 80 KB each; ImageNet-LT
  and iNaturalist would need 8 MB and 530 MB), and only at evaluated epochs (the accumulated one also at
  the newest epoch, from which the next epoch continues). Above that limit the negative gradient is kept
  by source *group* instead: ``grad_neg_by_group`` / ``grad_neg_by_group_cum`` (C, 3), column g the part of
  ``neg_c`` sent by samples of the classes of group ``by_group_names[g]`` ("many", "medium", "few" of
  :func:`ltlab.metrics.shot_split` of the training counts; an empty group is a zero column; the own class
  excluded as for by-source), enough for GALA Fig. 1(c) at 1,000 or 8,142 classes.
* ``RunConfig.probes`` chooses what is recorded (``PROBE_MODES``): "full" (all of the above), "cheap" (the
  per-class pos / neg sums per epoch, accumulated and GALA code only: no step records, no by-source or
  by-group matrix), "off" (no gradient probe at all). ``probes.npz`` says which in ``probe_mode``.
* Classifier weight norms per class, and the ``state_summary()`` of the loss (and of stateful loop parts).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import Tensor

MATRIX_MAX_CLASSES = 256
PROBE_MODES = ("full", "cheap", "off")  # RunConfig.probes (ltlab.config.PROBES describes each)
GROUP_NAMES = ("many", "medium", "few")  # columns of grad_neg_by_group (ltlab.metrics.shot_split)
STEP_MARKS = 10  # epoch 1 is recorded after step 1 and about this many evenly spaced steps
STEP_KEYS = ("grad_steps", "grad_pos_steps", "grad_neg_steps", "grad_pos_cumcum_steps", "grad_neg_cumcum_steps")
EVAL_ONLY = ("grad_neg_by_source", "grad_neg_by_group")  # recorded at evaluated epochs only
CUM_MATRICES = ("grad_neg_by_source_cum", "grad_neg_by_group_cum")  # also kept at the newest epoch
SPARSE_KEYS = EVAL_ONLY + CUM_MATRICES + STEP_KEYS  # stacked over the epochs that have them


def step_marks(num_steps: int, k: int = STEP_MARKS) -> list[int]:
    """Step counts after which epoch 1 is recorded: 1 and ``ceil(j * num_steps / k)`` for j = 1..k (all when fewer)."""
    if num_steps < 1:
        return []
    return sorted({1, *np.ceil(np.arange(1, k + 1) * num_steps / k).astype(int).tolist()})


def _ratio(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(neg > 0, pos / np.where(neg > 0, neg, 1.0), np.nan)


class GradientProbe:
    """Accumulates the per-class gradient statistics of one epoch on top of those of the epochs before.

    ``sums`` holds this epoch's partial sums, all float64 tensors on ``device`` and all linear in the
    batches (so under DDP they are summed over ranks and divided by the world size):
    ``pos_neg`` (2, C) rows pos / neg; ``cumcum`` (2, C) the sum over this epoch's steps of ``pos_neg``
    after each step; ``by_source`` (C, C) ``[classifier, source class]`` when kept, else ``by_group`` (C, 3)
    ``[classifier, source group]`` (own class included while summing, removed in :meth:`summary`);
    ``marks`` (K, 4, C) ``pos_neg`` and ``cumcum`` after each step of ``step_marks(record_steps)``. ``start``
    is the previous epoch's record (its ``grad_*_cum*`` keys; None: training starts here), identical on
    every rank.

    ``mode`` (``PROBE_MODES``): "full" records everything; "cheap" only pos / neg (no step records, no
    matrix); "off" records nothing (``active`` is False: the loop passes no probe). ``by_source`` None: the
    (C, C) matrix up to ``MATRIX_MAX_CLASSES`` classes, the (C, 3) by-group one above (it needs
    ``class_counts``, the training counts; without them no matrix is kept above the limit).
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", *, by_source: bool | None = None,
                 start: Mapping[str, np.ndarray] | None = None, record_steps: int = 0,
                 class_counts: list[int] | np.ndarray | None = None, mode: str = "full"):
        if mode not in PROBE_MODES:
            raise ValueError(f"probes={mode!r}: must be one of {', '.join(PROBE_MODES)} (see ltlab.config.PROBES)")
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.mode = mode
        self.active = mode != "off"
        full = mode == "full"
        self.by_source = full and (num_classes <= MATRIX_MAX_CLASSES if by_source is None else bool(by_source))
        self.by_group = full and not self.by_source and by_source is None and class_counts is not None
        self.group_of = None
        if self.by_group:
            self.group_of = torch.as_tensor(group_index(class_counts), device=self.device)
        self.record_steps = int(record_steps) if full else 0
        self.marks = {s: i for i, s in enumerate(step_marks(self.record_steps))}
        self.start = _start_state(start, num_classes, self.by_source,
                                  group_index(class_counts) if self.by_group else None)
        self.reset()

    def reset(self) -> None:
        c, z = self.num_classes, lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=self.device)
        self.steps = 0
        self.sums = {"pos_neg": z(2, c), "cumcum": z(2, c)} if self.active else {}
        if self.by_source:
            self.sums["by_source"] = z(c, c)
        if self.by_group:
            self.sums["by_group"] = z(c, len(GROUP_NAMES))
        if self.marks:
            self.sums["marks"] = z(len(self.marks), 4, c)

    @torch.no_grad()
    def update(self, grad: Tensor, labels: Tensor) -> None:
        """Add one batch: ``grad`` is ``dL/dz`` (B, C), ``labels`` (B,). No host sync, no (C, C) temporary."""
        if not self.active:
            return
        g = grad.detach().abs().to(torch.float64)
        target = g.gather(1, labels[:, None]).squeeze(1)
        pn = self.sums["pos_neg"]
        pn[0].index_add_(0, labels, target)
        pn[1].add_(g.sum(0)).index_add_(0, labels, target, alpha=-1.0)
        if self.by_source:  # column k += |g_i| of every sample i of class k
            self.sums["by_source"].index_add_(1, labels, g.T)
        elif self.by_group:  # column G += |g_i| of every sample i of a class in group G
            self.sums["by_group"].index_add_(1, self.group_of[labels], g.T)
        self.sums["cumcum"].add_(pn)
        self.steps += 1
        mark = self.marks.get(self.steps)
        if mark is not None:
            self.sums["marks"][mark] = torch.cat([pn, self.sums["cumcum"]])

    def load_sums(self, sums: Mapping[str, Tensor], steps: int, scale: float = 1.0) -> None:
        """Continue an epoch from saved partial ``sums`` (multiplied by ``scale``) after ``steps`` steps."""
        for k, t in self.sums.items():  # a sum the checkpoint lacks (an older ltlab) is unknown: NaN
            t.copy_(torch.as_tensor(sums[k]).to(t) * scale if k in sums else torch.full_like(t, float("nan")))
        self.steps = int(steps)

    def summary(self) -> dict[str, np.ndarray]:
        """Per epoch: ``pos``, ``neg``, ``ratio`` (C,) and ``neg_by_source`` (C, C); the same with ``_cum`` (from
        step 0) and ``_cumcum`` (GALA code); with ``record_steps``, the ``*_steps`` arrays and ``steps``."""
        if not self.active:
            return {}
        s = {k: v.cpu().numpy() for k, v in self.sums.items()}
        pn, st = s["pos_neg"], self.start
        cum = st["cum"] + pn
        cumcum = st["cumcum"] + self.steps * st["cum"] + s["cumcum"]
        out = {}
        for suffix, (pos, neg) in (("", pn), ("_cum", cum), ("_cumcum", cumcum)):
            neg = np.maximum(neg, 0.0)
            out.update({f"pos{suffix}": pos.copy(), f"neg{suffix}": neg, f"ratio{suffix}": _ratio(pos, neg)})
        if self.by_source:
            out["neg_by_source"] = _off_diagonal(s["by_source"])
            out["neg_by_source_cum"] = _off_diagonal(st["by_source"] + s["by_source"])
        if self.by_group:  # the own class's part (the positive gradient) out of its group's column
            own = self.group_of.cpu().numpy()
            out["neg_by_group"] = _without_own(s["by_group"], own, pn[0])
            out["neg_by_group_cum"] = _without_own(st["by_group"] + s["by_group"], own, cum[0])
        if self.marks:
            m = s["marks"]
            out.update(steps=np.asarray(list(self.marks), dtype=np.float64) / self.record_steps,
                       pos_steps=m[:, 0], neg_steps=np.maximum(m[:, 1], 0.0), pos_cumcum_steps=m[:, 2],
                       neg_cumcum_steps=np.maximum(m[:, 3], 0.0))
        return out


def group_index(class_counts) -> np.ndarray:
    """Group of each class (0 many, 1 medium, 2 few: ``GROUP_NAMES``) from :func:`ltlab.metrics.shot_split`."""
    from .metrics import shot_split

    out = np.zeros(len(class_counts), dtype=np.int64)
    for g, name in enumerate(GROUP_NAMES):
        out[shot_split(class_counts)[name]] = g
    return out


def group_matrix(by_source: np.ndarray, class_counts) -> np.ndarray:
    """A (..., C, C) by-source matrix summed into its (..., C, 3) by-group counterpart (what the probe records
    above ``MATRIX_MAX_CLASSES``)."""
    g = group_index(class_counts)
    onehot = np.zeros((len(g), len(GROUP_NAMES)))
    onehot[np.arange(len(g)), g] = 1.0
    return np.asarray(by_source) @ onehot


def _without_own(m: np.ndarray, group: np.ndarray, pos: np.ndarray) -> np.ndarray:
    m = m.copy()
    m[np.arange(len(group)), group] -= pos
    return np.maximum(m, 0.0)


def _off_diagonal(m: np.ndarray) -> np.ndarray:
    m = m.copy()
    np.fill_diagonal(m, 0.0)
    return m


def _start_state(record: Mapping[str, np.ndarray] | None, c: int, by_source: bool,
                 own_group: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The accumulated sums a new epoch continues from: ``cum`` and ``cumcum`` (2, C), ``by_source`` (C, C),
    ``by_group`` (C, 3) (with the own class's part added back into its group ``own_group[c]``, as the probe
    sums them; None: not kept).

    From the previous epoch's record; zeros when training starts; NaN when the record predates the
    accumulated statistics (a checkpoint of an older ltlab: they cannot be rebuilt, so they stay unknown).
    """
    g = len(GROUP_NAMES)
    by_group = None
    if own_group is not None:  # the own class's positive part back into its group's column (the sums hold it)
        if record is None or "grad_neg_by_group_cum" not in record or "grad_pos_cum" not in record:
            by_group = np.full((c, g), 0.0 if record is None else np.nan)
        else:
            by_group = np.asarray(record["grad_neg_by_group_cum"], dtype=np.float64).copy()
            by_group[np.arange(c), own_group] += np.asarray(record["grad_pos_cum"], dtype=np.float64)
    if record is None or "grad_pos_cum" not in record or (by_source and "grad_neg_by_source_cum" not in record):
        fill = 0.0 if record is None else np.nan
        return {"cum": np.full((2, c), fill), "cumcum": np.full((2, c), fill),
                "by_source": np.full((c, c), fill) if by_source else None, "by_group": by_group}
    pos = np.asarray(record["grad_pos_cum"], dtype=np.float64)
    return {"cum": np.stack([pos, record["grad_neg_cum"]]).astype(np.float64),
            "cumcum": np.stack([record["grad_pos_cumcum"], record["grad_neg_cumcum"]]).astype(np.float64),
            "by_source": np.asarray(record["grad_neg_by_source_cum"], dtype=np.float64) + np.diag(pos)
            if by_source else None, "by_group": by_group}


def position_sums(saved, probe: GradientProbe) -> Mapping[str, Tensor]:
    """The partial sums of a mid-epoch checkpoint for ``probe.load_sums``. Checkpoints of an older ltlab
    saved one tensor, the (C, C) by-source matrix or (2, C) rows pos / all samples: the epoch's
    GALA-code sums and step records are then unknown (NaN)."""
    if isinstance(saved, Mapping):
        return saved
    m = torch.as_tensor(saved, dtype=torch.float64)
    pos, total = (m.diagonal(), m.sum(1)) if probe.by_source else (m[0], m[1])
    out = {k: torch.full_like(v, float("nan")) for k, v in probe.sums.items()}
    out["pos_neg"] = torch.stack([pos, total - pos]).to(out["pos_neg"])
    if probe.by_source:
        out["by_source"] = m
    return out


def add_record(records: list[dict], rec: dict, evaluated: bool) -> None:
    """Append an epoch's record, keeping the (C, C) matrices sparse (``SPARSE_KEYS``).

    The per-epoch matrix stays at evaluated epochs only; the accumulated one at evaluated epochs and the
    newest epoch (the next epoch continues from it), so it is dropped from the previous record unless
    that epoch was evaluated.
    """
    if not evaluated:
        for k in EVAL_ONLY:
            rec.pop(k, None)
    if records and not any(k in records[-1] for k in EVAL_ONLY):
        for k in CUM_MATRICES:
            records[-1].pop(k, None)
    records.append(rec)


def weight_norms(model: torch.nn.Module) -> np.ndarray:
    """L2 norm of each class's classifier weight vector (C,)."""
    w = model.head.weight_matrix() if hasattr(model.head, "weight_matrix") else model.head.weight
    return w.detach().float().norm(dim=1).cpu().numpy()


def loss_summary(*parts) -> dict[str, np.ndarray]:
    """The ``state_summary()`` of the loss (and of other stateful parts, e.g. GLAG's AFG loader) as numpy
    arrays; parts without one contribute nothing."""
    out = {}
    for part in parts:
        fn = getattr(part, "state_summary", None)
        for k, v in (fn() if fn else {}).items():
            out[k] = np.asarray(v.detach().cpu().numpy() if isinstance(v, Tensor) else v, dtype=np.float64)
    return out


def stack_epochs(records: list[dict[str, np.ndarray]], prefix: str = "") -> dict[str, np.ndarray]:
    """Stack per-epoch dicts into arrays with a leading epoch axis (keys missing in some epochs: NaN).

    Keys in ``SPARSE_KEYS`` are stacked over the epochs that have them only, with the epoch indices
    in ``<key>_epochs`` (a (C, C) matrix per epoch would make the history, and every checkpoint, grow
    by 80 KB per epoch for CIFAR-100).
    """
    keys = sorted({k for r in records for k in r})
    out = {}
    for k in keys:
        shapes = {np.shape(r[k]) for r in records if k in r}
        if len(shapes) != 1:
            continue
        shape = shapes.pop()
        if k in SPARSE_KEYS:
            have = [i for i, r in enumerate(records) if k in r]
            out[prefix + k] = np.stack([np.asarray(records[i][k], dtype=np.float64) for i in have])
            out[prefix + k + "_epochs"] = np.asarray(have, dtype=np.int64)
            continue
        out[prefix + k] = np.stack([np.asarray(r[k], dtype=np.float64) if k in r else np.full(shape, np.nan)
                                    for r in records])
    return out


def unstack_epochs(arrays: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """Per-epoch dicts back from :func:`stack_epochs` (``n`` epochs); ``stack_epochs`` of the result gives
    ``arrays`` again (an all-NaN entry counts as missing, which stacks to the same NaNs)."""
    records: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for k, v in arrays.items():
        if k.endswith("_epochs") and k[:-len("_epochs")] in SPARSE_KEYS:
            continue
        if k in SPARSE_KEYS:
            for i, e in enumerate(np.asarray(arrays[k + "_epochs"]).tolist()):
                records[e][k] = v[i]
            continue
        for e in range(n):
            if not np.isnan(v[e]).all():
                records[e][k] = v[e]
    return records


def record_info(mode: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What ``probes.npz`` says about itself: ``probe_mode`` (RunConfig.probes), ``matrix_max_classes`` (the
    by-source limit it was trained under) and, when the by-group matrices are there, ``by_group_names``."""
    out = {"probe_mode": np.asarray(mode), "matrix_max_classes": np.asarray(MATRIX_MAX_CLASSES, dtype=np.int64)}
    if any(k in arrays for k in ("grad_neg_by_group", "grad_neg_by_group_cum")):
        out["by_group_names"] = np.asarray(GROUP_NAMES)
    return out


def describe_recording(mode: str, num_classes: int) -> str:
    """One line for the start of training: what the gradient probe records in this run, and what not and why."""
    if mode == "off":
        return ("probes: off (RunConfig.probes='off'): no gradient statistics recorded; weight norms, prediction "
                "counts and loss internals are")
    if mode == "cheap":
        return ("probes: cheap (RunConfig.probes='cheap'): per-class positive/negative gradient sums per epoch, "
                "accumulated and GALA code; no epoch-1 step records, no negative gradient by source")
    if num_classes <= MATRIX_MAX_CLASSES:
        return (f"probes: full: per-class gradient sums (per epoch, accumulated, GALA code, epoch 1 at step grain) "
                f"and the negative gradient by source class ({num_classes} x {num_classes}, at evaluated epochs)")
    mb = num_classes * num_classes * 8 / 2 ** 20
    return (f"probes: full: per-class gradient sums (per epoch, accumulated, GALA code, epoch 1 at step grain); the "
            f"negative gradient by source group ({num_classes} x 3: many/medium/few), not by source class: "
            f"{num_classes} classes > MATRIX_MAX_CLASSES = {MATRIX_MAX_CLASSES} ({mb:,.0f} MB per matrix)")


def _num_classes(arrays: Mapping[str, np.ndarray]) -> int | None:
    for k in ("grad_pos", "weight_norm", "pred_count"):
        if k in arrays:
            return int(np.shape(arrays[k])[-1])
    return None


def not_recorded(arrays: Mapping[str, np.ndarray], key: str) -> str | None:
    """Why ``key`` is not in a run's probes (None when it is): the probe setting, the class limit of the
    by-source matrix, or (neither explains it) a run written by an ltlab that did not record it yet."""
    if key in arrays:
        return None
    mode = str(arrays["probe_mode"]) if "probe_mode" in arrays else None
    c = _num_classes(arrays)
    limit = int(arrays["matrix_max_classes"]) if "matrix_max_classes" in arrays else MATRIX_MAX_CLASSES
    grad = key.startswith("grad_")
    if grad and mode == "off":
        return (f"{key} was not recorded: the run was trained with probes='off' (no gradient probe); train with "
                "probes='full' (the default) to record it")
    if grad and mode == "cheap" and (key.startswith(("grad_neg_by_", )) or key in STEP_KEYS):
        return (f"{key} was not recorded: the run was trained with probes='cheap' (per-class sums only, no step "
                "records and no by-source / by-group matrix); train with probes='full' to record it")
    if key.startswith("grad_neg_by_source") and c is not None and c > limit:
        alt = key.replace("by_source", "by_group")
        return (f"{key} was not recorded: the run has {c:,} classes, more than MATRIX_MAX_CLASSES = {limit} (a "
                f"{c:,} x {c:,} matrix is {c * c * 8 / 2 ** 20:,.0f} MB per epoch); it records the negative gradient "
                f"by source group instead ({alt}, columns many / medium / few)" +
                ("" if alt in arrays else ", which this run lacks too (written by an ltlab without it)"))
    if key.startswith("grad_neg_by_group") and c is not None and c <= limit:
        alt = key.replace("by_group", "by_source")
        return (f"{key} was not recorded: the run has {c} classes, within MATRIX_MAX_CLASSES = {limit}, so it keeps "
                f"the full by-source matrix ({alt}); ltlab.probes.group_matrix({alt}, class_counts) sums it by group")
    return (f"{key} was not recorded: the run's probes.npz lacks it (a run written by an ltlab that did not record "
            f"{key} yet, or a loss without that internal)")


class NotRecordedError(KeyError):
    """A probe key a run did not record; the message says why (:func:`not_recorded`). A KeyError (what a
    missing key always raised here) whose ``str`` is the message itself."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def matrix_at(arrays: Mapping[str, np.ndarray], key: str, epoch: int) -> tuple[np.ndarray, int]:
    """``(arrays[key] at epoch, that epoch)`` for a key of ``SPARSE_KEYS``; ``epoch=-1`` is the last recorded.

    Raises a ValueError naming the recorded epochs when ``epoch`` has none, and a :class:`NotRecordedError`
    saying why when the run did not record ``key`` at all (probes setting, class count above
    ``MATRIX_MAX_CLASSES``). Runs written before the sparse format (no ``<key>_epochs``) hold every epoch.
    """
    why = not_recorded(arrays, key)
    if why is not None:
        raise NotRecordedError(why)
    m = np.asarray(arrays[key])
    epochs = np.asarray(arrays.get(key + "_epochs", np.arange(len(m))))
    if epoch < 0:
        if -epoch > len(epochs):
            raise ValueError(f"{key} has {len(epochs)} recorded epochs; epoch={epoch} is out of range")
        return m[epoch], int(epochs[epoch])
    hit = np.flatnonzero(epochs == epoch)
    if not len(hit):
        raise ValueError(f"{key} is recorded at the evaluated epochs only ({epochs.tolist()}); epoch {epoch} is not "
                         "one of them. Pick one of those (or -1), or train with a smaller eval_every")
    return m[hit[0]], epoch
