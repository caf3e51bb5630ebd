"""The paper-figure runs and verdicts (issue 27) without training: run naming over seeds, the commit check that
decides whether a figure run is reused, and each verdict's text computed from fake runs by the paper's statistic."""
from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ltlab.config import RunConfig
from ltlab.viz import paper_commits, paper_figures as PF, paper_numbers as PN

# 2 many (> 100), 1 medium, 2 few (< 20)
COUNTS = [500, 150, 50, 10, 5]


def _git_answer(code: int | None, stderr: str = ""):
    """A stand-in for paper_commits._git: exit ``code`` (None: git not available)."""
    def fake(*args):
        fake.calls.append(args)
        return None if code is None else subprocess.CompletedProcess(["git", *args], code, "", stderr)
    fake.calls = []
    return fake


# ---------------------------------------------------------------------- runs and seeds
def test_methods_use_softmax_eql_ala_without_drw_and_extra_seeds():
    m = PF.all_methods()
    assert m["EQL (softmax)"][1] == dict(loss="eql", loss_params={"form": "softmax"})
    assert "EQL" not in m
    assert m["ALA (no DRW)"][1] == dict(loss="ala") and m["ALA (DRW)"][1]["drw"]
    assert m["GALA (no bias)"][1]["head"] == "linear_nobias"
    for label, name in (("ALA (DRW)", "ala_drw"), ("LDAM (DRW)", "ldam_drw")):
        for s in (1, 2):
            d, params = m[PF.seed_label(label, s)]
            assert d == f"{name}_s{s}" and params["seed"] == s and params["loss"] == m[label][1]["loss"]
    dirs = [d for d, _ in m.values()]
    assert len(set(dirs)) == len(dirs)
    cfg = PF._config("ala_drw_s1", m["ALA (DRW) (seed 1)"][1], 30, Path("/r"), PF.PROTOCOL)
    assert cfg["seed"] == 1 and cfg["drw_start"] == 24 and cfg["run_dir"] == "/r/ala_drw_s1"
    RunConfig(**cfg)  # a valid config
    RunConfig(**PF._config("eql_softmax", m["EQL (softmax)"][1], 30, Path("/r"), PF.PROTOCOL))
    RunConfig(**PF._config("gala_nobias", m["GALA (no bias)"][1], 30, Path("/r"), PF.PROTOCOL))


def test_seed_runs_collect_a_label_and_its_seeds_only():
    runs = {"ALA (DRW)": 0, "ALA (DRW) (seed 2)": 2, "ALA (DRW) (seed 1)": 1, "ALA (no DRW)": 9, "LDAM (DRW)": 5}
    assert PN.seed_runs(runs, "ALA (DRW)") == [0, 1, 2]
    assert PN.seed_runs(runs, "LDAM (DRW)") == [5]
    assert PN.seed_label("CE", 0) == "CE" and PN.seed_label("CE", 3) == "CE (seed 3)"


def test_check_runs_needs_every_method_but_not_the_extra_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(PF, "as_run", lambda r: r)
    runs = {k: k for k in [*PF.METHODS, PF.AFG[0]]}
    assert PF.check_runs(runs) == runs
    del runs["ALA (no DRW)"]
    with pytest.raises(ValueError, match="ALA \\(no DRW\\)"):
        PF.check_runs(runs)


# ---------------------------------------------------------------------- the commit check
def test_training_code_changed_reads_git_diff(monkeypatch):
    fake = _git_answer(0)
    monkeypatch.setattr(paper_commits, "_git", fake)
    assert PF.training_code_changed("abc123") == (False, "training code unchanged since abc123")
    assert fake.calls[0][:5] == ("diff", "--quiet", "abc123", "HEAD", "--") and "ltlab/losses" in fake.calls[0]
    assert fake.calls[1][:4] == ("diff", "--quiet", "HEAD", "--")  # uncommitted edits: noted, not compared
    monkeypatch.setattr(paper_commits, "_git", _git_answer(1))
    assert PF.training_code_changed("abc123") == (
        True, "training code changed since abc123; uncommitted edits to the training code are not checked")
    monkeypatch.setattr(paper_commits, "_git", _git_answer(128, "fatal: bad revision 'abc123'"))
    changed, why = PF.training_code_changed("abc123")
    assert changed is None and "bad revision" in why
    monkeypatch.setattr(paper_commits, "_git", _git_answer(None))
    assert PF.training_code_changed("abc123") == (None, "git is not available")
    assert PF.training_code_changed(None) == (None, "no commit recorded with the run")


class _FakeRun:
    def __init__(self, d: Path, config: dict, epochs: int):
        self.dir, self.config = d, config
        self.metrics = pd.DataFrame({"epoch": np.arange(epochs)})

    def summary(self):
        return {"acc": 0.5, "acc_many": 0.9, "acc_medium": 0.5, "acc_few": 0.1}


@pytest.fixture
def held_run(tmp_path, monkeypatch):
    """A finished run directory of the ALA-DRW config (2 epochs) and train_run / load_run stand-ins."""
    cfg = PF._config("ala_drw", PF.METHODS["ALA (DRW)"][1], 2, tmp_path, PF.PROTOCOL)
    d = Path(cfg["run_dir"])
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "metrics.csv").write_text("epoch\n0\n1\n")
    held = {"config": {**RunConfig(**cfg).to_dict(), "git_commit": "c0ffee"}}
    monkeypatch.setattr(PF, "load_run", lambda path: _FakeRun(Path(path), held["config"], 2))
    trained = []

    def fake_train(c, resume):
        trained.append((c, resume))
        Path(c["run_dir"]).mkdir(parents=True, exist_ok=True)
        return _FakeRun(Path(c["run_dir"]), {**c, "git_commit": None}, c["epochs"])

    monkeypatch.setattr(PF, "train_run", fake_train)
    monkeypatch.setattr(paper_commits, "head_commit", lambda: "beef00")
    monkeypatch.setattr(PF, "head_commit", lambda: "beef00")
    return SimpleNamespace(cfg=cfg, dir=d, held=held, trained=trained)


def test_a_run_is_reused_while_the_training_code_is_unchanged(held_run, monkeypatch):
    monkeypatch.setattr(paper_commits, "_git", _git_answer(0))
    log = []
    run = PF._train_one("ALA (DRW)", held_run.cfg, log.append)
    assert held_run.trained == [] and run.config["git_commit"] == "c0ffee"
    assert log == [f"{'ALA (DRW)':16s} reused {held_run.dir}"]


def test_a_run_is_retrained_when_the_training_code_changed(held_run, monkeypatch):
    fake = _git_answer(1)
    monkeypatch.setattr(paper_commits, "_git", fake)
    (held_run.dir / "checkpoint.pt").write_text("old")
    log = []
    run = PF._train_one("ALA (DRW)", held_run.cfg, log.append)
    assert fake.calls[0][2] == "c0ffee"  # compared with the commit the run was trained at
    assert log[0] == (f"{'ALA (DRW)':16s} retrained: training code changed since c0ffee; uncommitted edits to the "
                      f"training code are not checked ({held_run.dir})")
    assert len(held_run.trained) == 1 and held_run.trained[0][1] is False  # from scratch, not resumed
    assert not (held_run.dir / "checkpoint.pt").exists()
    # config.json without a commit (a git worktree): train stamps the commit and run_commit reads it back
    assert (held_run.dir / PF.COMMIT_FILE).read_text().strip() == "beef00"
    assert PF.run_commit(run) == "beef00"


def test_a_run_is_reused_with_a_note_when_git_cannot_tell(held_run, monkeypatch):
    monkeypatch.setattr(paper_commits, "_git", _git_answer(None))
    log = []
    PF._train_one("ALA (DRW)", held_run.cfg, log.append)
    assert held_run.trained == []
    assert "reused" in log[0] and "git is not available: cannot tell whether the training code changed" in log[0]
    held_run.held["config"]["git_commit"] = None  # no commit anywhere: reused, and the line says so
    log.clear()
    PF._train_one("ALA (DRW)", held_run.cfg, log.append)
    assert held_run.trained == [] and "no commit recorded with the run" in log[0]


def test_the_readme_names_the_commits(tmp_path):
    def run(commit):
        return SimpleNamespace(config={"git_commit": commit}, dir=tmp_path)
    assert PN.commit_line({"CE": run("a1"), "GCL": run("a1")}) == "All 2 runs were trained at commit `a1`."
    assert PN.commit_line({"CE": run("a1"), "GCL": run("b2")}) == \
        "The runs were trained at several commits: `a1`: CE; `b2`: GCL."
    assert "not recorded" in PN.commit_line({"CE": run(None)})


# ---------------------------------------------------------------------- the verdicts
def _ala_run(df: np.ndarray, drw_start: int | None):
    return SimpleNamespace(class_counts=COUNTS, config={"drw_start": drw_start},
                           probes={"difficulty_factor": df, "quantity_factor": np.ones((len(df), 5))})


def _df(e: int, drop_at: int | None) -> np.ndarray:
    df = np.zeros((e, 5))
    df[:, :2] = 0.25
    df[:, 3:] = 0.3
    if drop_at is not None:
        df[drop_at:, 3:] = 0.2
    return df


def test_ala_fig4_is_judged_before_drw_and_names_the_reweighting():
    text = PN.ala_df_numbers(_ala_run(_df(6, 4), 4), _ala_run(_df(6, None), None))
    assert "Before DRW (epochs 1-4): the few group's DF is above the many group's at 4 of 4 epochs" in text
    assert "DRW switches on at epoch 5" in text and "at that epoch DF is few 0.20, many 0.25" in text
    assert "The paper's picture appears" in text and "the cause is the re-weighting" in text
    assert "fitted training images" not in text
    # without the run lacking DRW the cause is not claimed
    assert "the cause is" not in PN.ala_df_numbers(_ala_run(_df(6, 4), 4))
    # below the many group before DRW: the picture does not appear
    assert "does not appear" in PN.ala_df_numbers(_ala_run(_df(6, 2), 4))
    nodrw = PN.ala_df_numbers(_ala_run(_df(6, None), None))
    assert "No DRW: the few group's DF is above the many group's at 6 of 6 epochs" in nodrw and "appears" in nodrw


def test_ala_fig3a_rests_on_the_seeds(monkeypatch):
    group = np.array(["many", "many", "medium", "few", "few"])
    y = np.repeat(np.arange(5), 100)
    hard_many = {"CE": [0.05], "LDAM (DRW)": [0.11, 0.11, 0.10], "ALA (DRW)": [0.13, 0.11, 0.10]}

    def fake_py(run):  # p_y < 0.2 for the first share of the many-shot images, and for 10% of the few-shot ones
        py = np.ones(len(y))
        share = hard_many[run.label][run.seed]
        for c in (0, 1):
            py[np.where(y == c)[0][:int(round(share * 100))]] = 0.1
        for c in (3, 4):
            py[np.where(y == c)[0][:(60 if run.label == "CE" else 10)]] = 0.1
        return py, y

    monkeypatch.setattr(PN, "_true_class_probability", fake_py)
    runs = {"CE": SimpleNamespace(label="CE", seed=0, class_counts=COUNTS)}
    for k in ("LDAM (DRW)", "ALA (DRW)"):
        for s in range(3):
            runs[PN.seed_label(k, s)] = SimpleNamespace(label=k, seed=s, class_counts=COUNTS)
    text = PN.hard_image_numbers(runs)
    assert group[0] == "many"
    ala, ldam = np.array(hard_many["ALA (DRW)"]) * 100, np.array(hard_many["LDAM (DRW)"]) * 100
    assert f"ALA (DRW) {ala.mean():.1f} ± {ala.std(ddof=1):.1f} (3 seeds)" in text
    assert f"LDAM (DRW) {ldam.mean():.1f} ± {ldam.std(ddof=1):.1f} (3 seeds)" in text
    assert "within the seed spread" in text and "does not appear" in text
    # one seed each: said so, never a verdict
    one = {k: v for k, v in runs.items() if "seed" not in k}
    assert "rests on one seed" in PN.hard_image_numbers(one)
    # a clear difference over the seeds: the picture appears
    hard_many["ALA (DRW)"] = [0.05, 0.04, 0.05]
    assert "The paper's picture appears" in PN.hard_image_numbers(runs)


def test_ghm_fig2_reports_group_shares_of_all_samples_and_each_bin(monkeypatch):
    # GHM-CWAP probes: 2 equal-width bins per class (count v holds v N d samples: v = samples / (N d) = samples)
    samples = np.array([[400, 100], [120, 30], [30, 20], [2, 8], [1, 4]], float)  # per class, g < 0.5 / >= 0.5
    ghm = SimpleNamespace(class_counts=COUNTS, probes={"bin_widths": np.full((1, 5, 2), 0.5),
                                                       "bin_counts": samples[None]})
    hist = PN._ghm_probe_hist(ghm)
    # uniform inside each recorded bin: [0, 0.4) holds 4/5 of the lower half, [0.4, 0.6) a fifth of each half
    assert np.allclose(hist[:, :2].sum(1), 0.8 * samples[:, 0])
    assert np.allclose(hist[:, 2], 0.2 * samples.sum(1))
    assert np.allclose(hist.sum(1), samples.sum(1))
    other = np.zeros((5, 5))
    other[:, 0] = COUNTS
    monkeypatch.setattr(PN, "_train_g_hist", lambda run: other)
    runs = {"GHM-CWAP": ghm, "CE": SimpleNamespace(class_counts=COUNTS)}
    text = PN.ghm_distribution_numbers(runs)
    total = samples.sum()
    assert f"many-shot {samples[:2].sum() / total:.0%} and few-shot {samples[3:].sum() / total:.1%} of all samples" in text
    assert "[0.8, 1] " in text and f"CE: many-shot {sum(COUNTS[:2]) / sum(COUNTS):.0%} of all samples and" in text
    assert "0% of the few-shot samples at g >= 0.6" in text
    assert "The paper's picture appears" in text
    assert "share of the hard end" not in text


def test_gcl_fig1_is_judged_by_class_spread(monkeypatch):
    import ltlab.features as features

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), [50, 40, 30, 20, 10])
    wide = {"CE": [1.0, 1.0, 1.0, 1.0, 0.5], "GCL": [1.0, 1.0, 1.0, 1.0, 0.8]}

    def fake_features(run, split, extract=False):
        f = rng.normal(size=(len(y), 4)) * np.asarray(wide[run.label])[y, None] + 10 * y[:, None]
        return {"features": f, "labels": y}

    monkeypatch.setattr(features, "run_features", fake_features)
    runs = {k: SimpleNamespace(label=k, class_counts=COUNTS) for k in ("CE", "GCL")}
    text = PN.class_spread_numbers(runs)
    ce = float(text.split("rarest / head: CE ")[1].split(",")[0])
    assert 0.3 < ce < 0.7 and "The paper's picture appears" in text and "GCL widens the tail" in text


def test_gala_fig1a_text_is_the_measurements(monkeypatch):
    import torch

    init = np.sqrt(1 / 3)
    norms = {"CE": [2.6, 2, 1.5, 1.2, 1.0], "CE + CAS": [1.0, 1, 1, 1, 1.0], "GALA": [1.7, 1.5, 1.2, 0.8, init],
             "GALA (no bias)": [1.7, 1.5, 1.2, 0.8, 0.6]}
    theta = np.array([4000.0, 1000, 400, 200, 170])
    runs = {k: SimpleNamespace(class_counts=COUNTS, config={"loss_params": {}}, dir=Path("."),
                               probes={"weight_norm": np.array([v]), "theta": theta[None]}) for k, v in norms.items()}
    bias = torch.tensor([0.1, -0.05, 0.0, 0.02, -0.16])
    monkeypatch.setattr(PN, "rebuild_model", lambda run: SimpleNamespace(head=SimpleNamespace(bias=bias)))
    text = PN.weight_norm_numbers(runs)
    span = np.log(theta.max() + 1e-3) - np.log(theta.min() + 1e-3)
    assert f"spans {span:.2f} logits (lambda1 = 1)" in text
    assert "[-0.16, +0.10]" in text and "stays near its initial norm" in text
    assert "GALA (no bias) 2.83" in text and "bias absorbs" not in text and "take up" in text


def test_ghm_fig2_says_which_part_of_the_claim_fails(monkeypatch):
    monkeypatch.setattr(PN, "_train_g_hist", lambda run: np.zeros((5, 5)))
    widths = np.full((1, 5, 2), 0.5)
    few_hold_most = np.array([[10, 0], [10, 0], [10, 0], [50, 50], [50, 50]], float)
    ghm = SimpleNamespace(class_counts=COUNTS, probes={"bin_widths": widths, "bin_counts": few_hold_most[None]})
    text = PN.ghm_distribution_numbers({"GHM-CWAP": ghm})
    assert "does not appear" in text and "hold only 9% of the samples" in text
    hard_tail = np.array([[400, 0], [100, 0], [50, 0], [0, 30], [0, 20]], float)
    ghm.probes["bin_counts"] = hard_tail[None]
    assert "larger share than the many-shot classes of some g bin" in PN.ghm_distribution_numbers({"GHM-CWAP": ghm})


def test_ala_fig4_without_an_epoch_before_drw_says_so():
    text = PN.ala_df_numbers(_ala_run(_df(2, None), 0))
    assert "no epoch before it" in text and "does not appear on these runs: the run has no epoch before DRW" in text


def test_a_run_is_reused_with_a_note_while_training_code_edits_are_uncommitted(held_run, monkeypatch):
    answers = iter([0, 1])  # commit..HEAD unchanged; HEAD..working tree has edits

    def fake(*args):
        return subprocess.CompletedProcess(["git", *args], next(answers), "", "")

    monkeypatch.setattr(paper_commits, "_git", fake)
    log = []
    PF._train_one("ALA (DRW)", held_run.cfg, log.append)
    assert held_run.trained == []
    assert log == [f"{'ALA (DRW)':16s} reused {held_run.dir} (training code unchanged since c0ffee; uncommitted "
                   "edits to the training code are not checked)"]
