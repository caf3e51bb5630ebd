"""Every command and snippet of the user docs runs as a new user would run it, so the docs cannot drift.

README.md, docs/*.md and benchmarks/README.md are parsed (tests/docs_commands.py); each command must have
an entry in TABLE: how it runs here (shortened: fewer epochs, a small Fashion-MNIST in the real file
format), the documented message it stops with where the data, a GPU or Slurm are missing, or why it is
skipped. A command without an entry fails ``test_every_doc_command_has_an_entry``. The slow tests run each
command in its own copy of the project (tracked files only), with a fresh HOME (no ~/data, no CIFAR), no
GPU (CUDA_VISIBLE_DEVICES=""), the venv first on PATH; two at a time. Rows that differ from a row run that
way only in their arguments (the same subcommand, notebook, preset or not, one or two stages, or the same
documented failure) run through ``ltlab.cli.main`` in one process (:func:`split_by_launch_path`).
"""
from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from docs_commands import (ROOT, DocItem, Result, doc_files, extract, fake_fashion_mnist, make_copy,  # noqa: E402
                           run_shell, strip_comment, tracked_files, user_env)

FM = "<FMNIST>"  # replaced by the small Fashion-MNIST folder (600 train / 10 test images per class, IDX .gz)


@dataclass(frozen=True)
class Run:
    """Runs and succeeds. ``cmd``: the shortened form (None: as shown); ``setup``: commands run first in the
    same copy; ``expect``: regexes the output must contain; ``files``: paths (in the copy) that must exist;
    ``cwd``: where it runs ("." the copy, ".." a folder outside it); ``group``: rows of one group (and rows with the
    same ``setup``) run one after another in one copy, in docs order, the setup once (as a user runs them)."""
    why: str = ""
    cmd: str | None = None
    setup: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    cwd: str = "."
    group: str = ""


@dataclass(frozen=True)
class Fails:
    """Stops with the documented message ``MESSAGES[message]``, as one line (no traceback of ours)."""
    message: str
    why: str = ""
    cmd: str | None = None
    rc: int | None = None            # None: any non-zero exit status
    traceback_ok: bool = False       # torchrun's launcher and a Python snippet print their own
    setup: tuple[str, ...] = ()
    cwd: str = "."
    expect: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()     # regexes the output must not contain (e.g. a run that started anyway)


@dataclass(frozen=True)
class Skip:
    why: str


# name -> (the phrase the docs show, the regex the output must contain)
MESSAGES = {
    "cifar": ("CIFAR-100 not found: expected folder", r"CIFAR-100? not found: expected folder \S+cifar-10"),
    "file_list": ("list file .../ImageNet_LT_train.txt not found", r"list file \S+ not found"),
    "slurm": ("needs Slurm's sbatch and srun on PATH", r"needs Slurm's sbatch and srun on PATH"),
    "bench_cuda": ("--device cuda but no CUDA device is visible", r"--device cuda but no CUDA device is visible"),
    "parity_cuda": ("parity_fmnist: error: --device cuda but torch sees no CUDA device",
                    r"parity_fmnist: error: --device cuda but torch sees no CUDA device"),
    "gpu_check": ("gpu_check: error: ... sees no CUDA device", r"gpu_check: error: .* sees no CUDA device"),
}

SEARCH_README = ("python -m ltlab search gcl --trials 12 -p dataset digits_lt -p imbalance_factor 10 -p epochs 3 "
                 "--objective overall=0.5,few=0.5 --out-root runs/search_gcl")
SEARCH_TUNING = SEARCH_README.replace("--out-root", "--pruner median --out-root")
PROSE = "a command named in a sentence (its runnable forms are in the code blocks)"
DEMO_RUN = "python -m ltlab train -p epochs 1 -p run_dir runs/demo -p progress False"  # a finished run, 4 s
GLAG = "notebooks/presets/glag_fashion_mnist_if100.yaml"
TINY_FM = f"-p root {FM} -p epochs 1"
SLURM = ("python -m ltlab sweep notebooks/presets/{ce,ldam_drw,gcl}_cifar100_if{50,100,200}.yaml --seeds 0,1,2 "
         "-p root ~/data -p tensorboard True --out-root runs/c100 --executor slurm --slurm partition=gpu,"
         "gpus_per_node=1,cpus_per_task=8,timeout_min=120,mem_gb=16,array_parallelism=32")

TABLE: dict[str, Run | Fails | Skip] = {
    # ---- tuning (issue 26) and the methods reference (issue 29)
    "pip install 'ltlab[search]'": Skip("installs the search extra (optuna); the test extra includes it"),
    SEARCH_README: Run("2 trials of 1 epoch", cmd=SEARCH_README.replace("--trials 12", "--trials 2").replace(
        "-p epochs 3", "-p epochs 1")),
    SEARCH_TUNING: Run("2 trials of 1 epoch", cmd=SEARCH_TUNING.replace("--trials 12", "--trials 2").replace(
        "-p epochs 3", "-p epochs 1")),
    "python -m ltlab search --status runs/search_gcl": Skip("the status of the search above; tests/test_search.py "
                                                            "covers --status"),
    "make figures-workbench": Skip("a browser screenshot; tests/test_browser_workbench.py drives the same panel"),
    "python tools/gen_methods_doc.py": Run(expect=(r"wrote \S+docs/methods\.md",)),
    "python -m ltlab list": Run(expect=(r"losses\s+ce, focal",)),
    "python -m ltlab list loss gcl": Run(expect=(r"noise_mul = 0\.5",)),
    "python -m ltlab list presets": Run(expect=(r"glag_fashion_mnist_if100",)),
    "python -m ltlab train -p ...": Skip(PROSE),
    # ---- install and the suite
    "make install": Skip("installs into .venv (pip install -e); the tests run inside that environment"),
    "pip install -e '.[analysis,test]'": Skip("what make install runs"),
    "pip install -e '.[cluster]'": Skip("installs the cluster extra (submitit); tests/test_sweep_cluster.py covers it"),
    "mamba env create -f environment.yml": Skip("conda alternative to make install; needs conda"),
    "sudo apt-get install dataset-fashion-mnist": Skip("system package (root); make demo/test install it"),
    "apt-get install": Skip(PROSE),
    "make test": Skip("the whole suite, this test included"),
    "make test-fast": Skip("the suite without the slow / subprocess / browser tests; this file's fast checks included"),
    "make screenshots": Skip("tests/test_browser.py writing into figures/; the suite runs the same test into a "
                             "temporary folder"),
    "make test PYTEST_ARGS='-m \"not browser\"'": Skip("the whole suite, this test included"),
    "make figures": Skip("about an hour of training on 2 cores; notebook 08 runs the same code in "
                         "tests/test_interactive_notebooks.py"),
    "python tools/gen_presets.py": Run(expect=(r"\d+ presets",)),
    # ---- a first run
    "make demo": Run("make demo's recipe (make -n, install steps left out) with -p epochs 1",
                     cmd="make -n -o .venv/.ltlab-installed -o system-deps demo "
                         "| sed 's|--quiet|--quiet -p epochs 1|' | bash -e",
                     expect=(r"many \d\.\d+ \| medium", r"demo figures:"),
                     files=("runs/demo/metrics.csv", "runs/demo/01_train.ipynb")),
    "jupyter lab notebooks/": Run("a server; tests/test_browser.py runs every notebook in it",
                                  cmd="jupyter lab --version"),
    "python -m ltlab run notebooks/01_train.ipynb -p loss ldam -p loss_params \"{s: 30}\" -p drw_start 20 -p epochs 30":
        Run("2 epochs, DRW from epoch 1",
            cmd="python -m ltlab run notebooks/01_train.ipynb -p loss ldam -p loss_params \"{s: 30}\" -p drw_start 1 "
                "-p epochs 2 --quiet", expect=(r"epoch 2: overall",)),
    "python -m ltlab run notebooks/03_per_class_accuracy.ipynb -p run_dirs \"[runs/demo]\"":
        Run(setup=(DEMO_RUN,), expect=(r"executed notebook: .*03_per_class_accuracy",)),
    "python -m ltlab run notebooks/02_tsne.ipynb -p run_dirs \"[runs/demo]\"":
        Run(setup=(DEMO_RUN,), expect=(r"executed notebook: .*02_tsne",)),
    "papermill notebooks/01_train.ipynb out.ipynb -p epochs 5 -p loss ldam -p loss_params \"{s: 30}\"":
        Run("1 epoch", cmd="papermill notebooks/01_train.ipynb out.ipynb -p epochs 1 -p loss ldam "
                           "-p loss_params \"{s: 30}\"", files=("out.ipynb",)),
    "papermill notebooks/01_train.ipynb out.ipynb -p epochs 5":
        Run("1 epoch", cmd="papermill notebooks/01_train.ipynb out.ipynb -p epochs 1", files=("out.ipynb",)),
    # ---- presets
    f"python -m ltlab run notebooks/01_train.ipynb --preset {GLAG} -p epochs 2 -p stage_two.epochs 1":
        Run("small Fashion-MNIST", cmd=f"python -m ltlab run notebooks/01_train.ipynb --preset {GLAG} -p epochs 2 "
                                       f"-p stage_two.epochs 1 -p root {FM} --quiet",
            expect=(r"epoch 1: overall",)),
    f"python -m ltlab train --preset {GLAG}":
        Run("2 + 1 epochs, small Fashion-MNIST",
            cmd=f"python -m ltlab train --preset {GLAG} -p epochs 2 -p stage_two.epochs 1 -p root {FM} -p progress False",
            expect=(r"_stage2",)),
    "python -m ltlab run notebooks/01_train.ipynb --preset notebooks/presets/gcl_cifar100_if100.yaml":
        Fails("cifar", "no CIFAR here"),
    "python -m ltlab run notebooks/01_train.ipynb --preset notebooks/presets/gcl_cifar100_if100.yaml -p epochs 2 "
    "-p stage_two.epochs 1": Fails("cifar", "no CIFAR here; the shortened epochs validate first"),
    "python -m ltlab sweep notebooks/presets/gcl_cifar10_if{50,100}.yaml --seeds 0,1,2":
        Fails("cifar", "no CIFAR here: stopped before any run starts", absent=(r"executed notebook",)),
    # ---- running.md
    "python -m ltlab run notebooks/01_train.ipynb -p dataset fashion_mnist_lt -p weight_decay 5e-4 -p epochs 10":
        Run("1 epoch, small Fashion-MNIST",
            cmd=f"python -m ltlab run notebooks/01_train.ipynb -p dataset fashion_mnist_lt -p weight_decay 5e-4 "
                f"{TINY_FM} --quiet", expect=(r"epoch 1: overall",)),
    "python -m ltlab train -p dataset fashion_mnist_lt -p weight_decay 5e-4 -p epochs 10":
        Run("1 epoch, small Fashion-MNIST",
            cmd=f"python -m ltlab train -p dataset fashion_mnist_lt -p weight_decay 5e-4 {TINY_FM} -p progress False",
            expect=(r"epoch 1: overall",)),
    "python -m ltlab run notebooks/01_train.ipynb -p dataset cifar100_lt -p root ~/data -p model resnet32 -p epochs 200 "
    "-p batch_size 128 -p lr 0.1 -p lr_schedule step -p milestones \"[160, 180]\" -p warmup_epochs 5":
        Fails("cifar", "no CIFAR in ~/data"),
    "python -m ltlab run notebooks/01_train.ipynb -p dataset fashion_mnist_lt -p imbalance_factor 100 -p epochs 10":
        Run("1 epoch, small Fashion-MNIST",
            cmd=f"python -m ltlab run notebooks/01_train.ipynb -p dataset fashion_mnist_lt -p imbalance_factor 100 "
                f"{TINY_FM} --quiet", expect=(r"epoch 1: overall",)),
    "python -m ltlab run notebooks/01_train.ipynb -p epochs 30 -p run_dir runs/demo -p resume True":
        Run("2 epochs, the first trained before", setup=(DEMO_RUN.replace("epochs 1", "epochs 2 -p epochs_per_call 1"),),
            cmd="python -m ltlab run notebooks/01_train.ipynb -p epochs 2 -p run_dir runs/demo -p resume True --quiet",
            expect=(r"epoch 2: overall",)),
    f"python -m ltlab run notebooks/01_train.ipynb --preset {GLAG} -p run_dir "
    "runs/<name>_stage1 -p resume True":
        Run("stage one stopped after 1 of 2 epochs, then resumed; small Fashion-MNIST",
            setup=(f"python -m ltlab train --preset {GLAG} -p root {FM} -p epochs 2 -p stage_two.epochs 1 "
                   "-p epochs_per_call 1 -p run_dir runs/t_glag_stage1 -p progress False || true",),
            cmd=f"python -m ltlab run notebooks/01_train.ipynb --preset {GLAG} -p root {FM} -p epochs 2 "
                "-p stage_two.epochs 1 -p run_dir runs/t_glag_stage1 -p resume True --quiet",
            expect=(r"t_glag_stage2",), files=("runs/t_glag_stage2/metrics.csv",)),
    # ---- sweeps
    'python -m ltlab sweep -p dataset fashion_mnist_lt -p dataset_params "{n_max: 500}" -p epochs 5 '
    "--grid loss=ce,ldam --seeds 0,1 --parallel 2 --out-root runs/sweep_fmnist":
        Run("1 epoch, one seed, small Fashion-MNIST; it talks and ends with the summary and the table paths",
            cmd=f'python -m ltlab sweep -p dataset fashion_mnist_lt -p dataset_params "{{n_max: 500}}" {TINY_FM} '
                "--grid loss=ce,ldam --seeds 0 --parallel 2 --out-root runs/sweep_fmnist",
            expect=(r"sweep: 2 run\(s\); running 2, 2 at a time into ", r"\[2/2\] done +loss=", r"mean ± std over seeds",
                    r"tables: \S+/runs/sweep_fmnist/results\.csv and "),
            files=("runs/sweep_fmnist/results.csv", "runs/sweep_fmnist/results.tex",
                   "runs/sweep_fmnist/results_runs.csv"), group="sweep_fmnist"),
    SLURM + " --no-wait": Fails("slurm", "no Slurm here"),
    SLURM + " --table runs/c100/results": Fails("slurm", "no Slurm here"),
    "python -m ltlab sweep --status runs/c100":
        Run("on the README's local Fashion-MNIST sweep, run just before it in the same copy",
            cmd="python -m ltlab sweep --status runs/sweep_fmnist", group="sweep_fmnist", expect=(r"done",)),
    "tensorboard --logdir runs/c100": Run("a server", cmd="tensorboard --version"),
    "python -m ltlab sweep ... --per-gpu 4": Skip(PROSE + "; needs GPUs"),
    # ---- multi-GPU
    "torchrun --standalone --nproc_per_node=4 -m ltlab train --preset notebooks/presets/gcl_cifar100_if100.yaml "
    "-p root ~/data": Fails("cifar", "2 CPU processes (gloo; 4 on 2 cores only add 2 torch imports), no CIFAR",
                            traceback_ok=True, cmd="torchrun --standalone --nproc_per_node=2 -m ltlab train --preset "
                                                   "notebooks/presets/gcl_cifar100_if100.yaml -p root ~/data"),
    "torchrun --standalone --nproc_per_node=4 -m ltlab train --preset notebooks/presets/gala_imagenet_lt.yaml "
    "-p sync_bn True": Fails("file_list", "no ImageNet-LT lists; 2 CPU processes", traceback_ok=True,
                             cmd="torchrun --standalone --nproc_per_node=2 -m ltlab train --preset "
                                 "notebooks/presets/gala_imagenet_lt.yaml -p sync_bn True"),
    "torchrun --standalone --nproc_per_node=4 -m ltlab train --preset notebooks/presets/gcl_cifar100_if100.yaml "
    "-p run_dir runs/<time>_gcl_cifar100_if100_stage1 -p resume True":
        Fails("cifar", "no CIFAR (the data check comes first)", traceback_ok=True,
              cmd="torchrun --standalone --nproc_per_node=4 -m ltlab train --preset "
                  "notebooks/presets/gcl_cifar100_if100.yaml -p run_dir runs/x_stage1 -p resume True"),
    "torchrun --standalone --nproc_per_node=2 -m ltlab train -p dataset digits_lt -p device cpu -p epochs 2":
        Run("1 epoch", cmd="torchrun --standalone --nproc_per_node=2 -m ltlab train -p dataset digits_lt -p device cpu "
                           "-p epochs 1 -p progress False", expect=(r"epoch 1: overall",)),
    "torchrun --standalone --nproc_per_node=4 my_train.py": Skip("your own script"),
    "torchrun --standalone --nproc_per_node=4 -m ltlab train --preset ...": Skip(PROSE),
    # ---- benchmarks
    "make bench": Skip("timing benchmarks (minutes by design, never part of the suite); the scripts' GPU-less "
                       "failures are checked below"),
    "python benchmarks/bench_train.py --device cuda": Fails("bench_cuda", "no GPU"),
    "python benchmarks/parity_fmnist.py --device cuda --epochs 30": Fails("parity_cuda", "no GPU"),
    "bash benchmarks/gpu_check.sh": Fails("gpu_check", "no GPU", rc=3),
    "bash benchmarks/gpu_check.sh parity": Fails("gpu_check", "no GPU", rc=3),
    "python benchmarks/compare_methods.py --seeds 0 1 2":
        Run("1 seed, 1 epoch, on digits-LT (Fashion-MNIST's 10,000 test images cost 10 s per method here)",
            cmd="python benchmarks/compare_methods.py --dataset digits_lt --n-max 100 --seeds 0 --epochs 1",
            expect=(r"\| GHM-CWAP full, weight_norm none \|",)),
    "python benchmarks/compare_methods.py --seeds 0 1 2 --only ce seesaw ghm_cwap ghm_cwap_margins ghm_cwap_weights "
    "ghm_cwap_first ghm_cwap_density ghm_cwap_mean ghm_cwap_nonorm":
        Run("1 seed, 1 epoch, on digits-LT", cmd="python benchmarks/compare_methods.py --dataset digits_lt --n-max 100 "
            "--seeds 0 --epochs 1 --only ce seesaw ghm_cwap ghm_cwap_margins ghm_cwap_weights ghm_cwap_first "
            "ghm_cwap_density ghm_cwap_mean ghm_cwap_nonorm", expect=(r"\| GHM-CWAP full, weight_norm none \|",)),
    # ---- names in sentences and synopses
    "python -m ltlab run": Skip(PROSE), "python -m ltlab run NOTEBOOK": Skip(PROSE),
    "python -m ltlab run <notebook>": Skip(PROSE), "python -m ltlab train": Skip(PROSE),
    "python -m ltlab train ...": Skip(PROSE), "python -m ltlab sweep": Skip(PROSE),
    "python -m ltlab train|run": Skip(PROSE),
    "python -m ltlab.launch.worker <run>/.sweep_job.json": Skip(PROSE + "; started by the sweep itself"),
    "python -m ltlab run <notebook> [--preset p.yaml] -p key value ...": Skip("a synopsis"),
    "python -m ltlab sweep <preset.yaml>... [--grid k=v1,v2]": Skip("a synopsis"),
}

# the preset table of docs/presets.md: one command per preset
PRESET_ROW = re.compile(r"python -m ltlab run notebooks/01_train\.ipynb --preset notebooks/presets/(\w+)\.yaml")

# ```python snippets: keyed by their first line that is not an import; ``subs`` shorten them
SNIPPETS: dict[str, tuple[Run | Fails, tuple[tuple[str, str], ...], str]] = {
    'space_table("gcl")': (Run(), (), ""),
    'run = ltlab.run(dataset="digits_lt", imbalance_factor=100, loss="ce", epochs=3)': (
        Run(), (), 'assert run.per_class["acc"].shape == (len(run.metrics), 10), run.per_class["acc"].shape'),
    'run = ltlab.load_run("runs/demo")': (
        Run("from a folder outside the project, on a 1-epoch run", setup=(DEMO_RUN,), cwd=".."), (),
        'assert any(Path(d, "exports/mine/tsne.png").exists() for d in (".", ltlab.runs.project_home()))'),
    'config = ltlab.RunConfig(dataset="digits_lt", loss="ldam", loss_params={"s": 30}, drw_start=1, epochs=2)': (
        Run(), (), 'assert run.per_class["acc"].shape == (2, 10)'),
    'class_counts = [500, 230, 106, 49, 23, 11, 5]': (Run(), (), ""),
    'res = posthoc_on_run("runs/demo", "logit_adjust", taus=[0.5, 1.0, 1.5, 2.0])': (
        Run("on a 1-epoch run", setup=(DEMO_RUN,)), (), 'assert res["select_on"] == "none" and res["tau"] == 1.0'),
    'df = batch.sweep("notebooks/01_train.ipynb", ["notebooks/presets/gcl_cifar100_if100.yaml"], seeds=[0, 1, 2],': (
        Fails("slurm", "no Slurm here", traceback_ok=True), (), ""),
}


def entry(item: DocItem) -> Run | Fails | Skip | None:
    if item.kind == "python":
        key = snippet_key(item.text)
        return SNIPPETS[key][0] if key in SNIPPETS else None
    if item.text in TABLE:
        return TABLE[item.text]
    m = PRESET_ROW.fullmatch(item.text)
    if m and (ROOT / "notebooks" / "presets" / f"{m.group(1)}.yaml").exists():
        return preset_row(m.group(1))
    return None


def snippet_key(text: str) -> str:
    return next((strip_comment(ln).strip() for ln in text.splitlines()
                 if strip_comment(ln).strip() and not ln.startswith(("import ", "from "))), "")


@functools.lru_cache(maxsize=None)  # entry() asks once per row and per use; the YAML is read once
def preset_row(name: str) -> Run | Fails:
    """A row of the preset table: CIFAR / file-list presets stop with their data message; the Fashion-MNIST
    demos run for 1 epoch per stage on the small Fashion-MNIST."""
    preset = yaml.safe_load((ROOT / "notebooks" / "presets" / f"{name}.yaml").read_text())
    if preset["dataset"].startswith("cifar"):
        return Fails("cifar")
    if preset["dataset"] == "file_list":
        return Fails("file_list")
    epochs = "-p epochs 2 -p stage_two.epochs 1" if "stage_two" in preset else "-p epochs 1"
    return Run("small Fashion-MNIST, 1 epoch (two stages: 2 + 1, as the README's GLAG command)",
               cmd=f"python -m ltlab run notebooks/01_train.ipynb --preset notebooks/presets/{name}.yaml {epochs} "
                   f"-p root {FM} --quiet", expect=(r"epoch 1: overall",))


ITEMS = extract()
UNIQUE = list({(i.kind, i.text): i for i in ITEMS}.values())
RUNNABLE = [i for i in UNIQUE if isinstance(entry(i), (Run, Fails))]


def test_every_doc_command_has_an_entry():
    missing = [f"{i.where}: {i.text if i.kind == 'shell' else snippet_key(i.text)!r}" for i in UNIQUE if entry(i) is None]
    assert not missing, ("new command in docs: add it to the table in tests/test_docs.py (TABLE, or SNIPPETS for "
                         "```python blocks):\n  " + "\n  ".join(missing))


def test_every_table_entry_is_in_the_docs():
    shell = {i.text for i in UNIQUE if i.kind == "shell"}
    snippets = {snippet_key(i.text) for i in UNIQUE if i.kind == "python"}
    stale = [k for k in TABLE if k not in shell] + [k for k in SNIPPETS if k not in snippets]
    assert not stale, f"entries for commands the docs no longer show (remove them): {stale}"


def test_expected_messages_are_the_documented_ones():
    text = "\n".join(p.read_text() for p in doc_files())
    flat = " ".join(text.split())
    undocumented = [phrase for phrase, _ in MESSAGES.values() if phrase not in flat]
    assert not undocumented, f"the test expects messages the docs do not show: {undocumented}"


def test_docs_send_users_only_to_what_the_repository_has():
    """Links resolve inside the repository; nothing points at the team's own notes."""
    internal = re.compile(r"reference/methods\.md|baselines\.md|ARCHITECTURE\.md|\.\./shared|/work/shared")
    files = [*doc_files(), *(ROOT / "notebooks").glob("*.ipynb"), *(ROOT / "ltlab").rglob("*.py")]
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in files for m in internal.finditer(p.read_text())]
    assert not hits, hits
    broken = []
    for p in doc_files():
        for target in re.findall(r"\]\(([^)\s]+)\)", p.read_text()):
            if not re.match(r"[a-z]+:", target) and not (p.parent / target.split("#")[0]).exists():
                broken.append(f"{p.relative_to(ROOT)} -> {target}")
    assert not broken, broken


# ------------------------------------------------------------------------------------------------ slow
def shortened(item: DocItem, e: Run | Fails) -> str:
    if item.kind == "python":
        _, subs, check = SNIPPETS[snippet_key(item.text)]
        code = item.text
        for old, new in subs:
            assert old in code, f"{item.where}: the snippet no longer contains {old!r}"
            code = code.replace(old, new)
        code = "from pathlib import Path\n" + code + ("\nimport ltlab\n" + check + "\n" if check else "")
        return "python - <<'SNIPPET'\n" + code + "SNIPPET"
    return e.cmd or item.text


def _ltlab_argv(item: DocItem, words: list[str] | None = None) -> list[str] | None:
    """The ``ltlab`` command-line arguments of a shell row (``python -m ltlab ...``, or, for a failing row,
    ``torchrun ... -m ltlab train ...``: the data checks come before any process group), else None. ``words``:
    the command's words as bash makes them (:func:`shell_words`); by default shlex's (braces and ~ unexpanded)."""
    e = entry(item)
    if item.kind != "shell" or not isinstance(e, (Run, Fails)):
        return None
    words = shlex.split(e.cmd or item.text) if words is None else words
    if words[:3] == ["python", "-m", "ltlab"]:
        return words[3:]
    if (isinstance(e, Fails) and words[0] == "torchrun" and "-m" in words
            and words[words.index("-m") + 1:words.index("-m") + 2] == ["ltlab"]):
        return words[words.index("-m") + 2:]
    return None


def in_process_argv(item: DocItem, words: list[str] | None = None) -> list[str] | None:
    """:func:`_ltlab_argv` of a row that needs no shell beyond its words (no setup, group, pipe, redirect,
    variable or glob; no files to check), as ``ltlab.cli.main`` takes it in the batch process, else None. A
    training notebook run (``run notebooks/01_train.ipynb ... --quiet``) becomes ``train ... -p progress False``:
    the same parameters, checks, stages and summary, in the batch's process instead of a Jupyter kernel."""
    e = entry(item)
    argv = _ltlab_argv(item, words)
    if (argv is None or e.setup or e.cwd != "." or e.files or getattr(e, "group", "")
            or re.search(r"[$`|;&<>*?]", (e.cmd or item.text).replace(FM, "FM"))):  # <FMNIST>: a path, not a redirect
        return None
    if isinstance(e, Run) and argv[:2] == ["run", "notebooks/01_train.ipynb"]:
        argv = ["train", *[a for a in argv[2:] if a != "--quiet"], "-p", "progress", "False"]
    return argv


def shell_words(command: str, env: dict[str, str]) -> list[str]:
    """The words bash makes of ``command`` (quotes, brace expansion, ~ of ``env``'s HOME), without running it:
    what the batch process hands to ``ltlab.cli.main`` (only rows with no ``$``, backquote, pipe, redirect or
    glob get here, :func:`in_process_argv`)."""
    out = subprocess.run(["bash", "-c", f"printf '%s\\0' {command}"], env=env, capture_output=True, check=True)
    return out.stdout.decode().split("\0")[:-1]


def launch_path(item: DocItem) -> tuple | None:
    """What a ``python -m ltlab`` / torchrun row exercises beyond its parameter values, else None. Failing rows:
    (launcher, subcommand, documented message). Rows that run: (subcommand, notebook, preset or -p only, one or
    two stages), torchrun ones excluded (their ranks are the point)."""
    argv = _ltlab_argv(item)
    e = entry(item)
    if argv is None:
        return None
    if isinstance(e, Fails):
        return shlex.split(e.cmd or item.text)[0], argv[0], e.message
    preset = argv[argv.index("--preset") + 1] if "--preset" in argv else None
    two = preset is not None and "stage_two" in yaml.safe_load((ROOT / preset).read_text())
    return argv[0], argv[1] if argv[0] == "run" else None, preset is not None, two


def split_by_launch_path(items: list[DocItem]) -> tuple[list[DocItem], list[DocItem]]:
    """(rows that run as their own process, rows checked in one in-process batch): of the rows with the same
    :func:`launch_path`, the first (docs order; one needing a shell first) runs as a user runs it; the others
    (e.g. the preset table's data-less rows, the Fashion-MNIST presets after the first) differ only in their
    arguments, so they go through ``ltlab.cli.main`` in one process (:func:`in_process_argv`)."""
    ordered = sorted(items, key=lambda i: (in_process_argv(i) is not None, RUNNABLE.index(i)))
    seen, own, batch = set(), [], []
    for item in ordered:
        path = launch_path(item)
        if path is not None and path in seen and in_process_argv(item) is not None:
            batch.append(item)
            continue
        seen.add(path)
        own.append(item)
    return own, batch


def own_jobs(own: list[DocItem]) -> tuple[list[list[DocItem]], dict[DocItem, DocItem]]:
    """(jobs, twin): the rows run as their own processes, in jobs of one project copy each (rows of one ``group``
    or with the same setup share a job, in docs order, the setup once), and for each row the row whose run it
    shares (itself, or an earlier row of its job with the same shortened command and folder)."""
    jobs: dict[tuple, list[DocItem]] = {}
    twin: dict[DocItem, DocItem] = {}
    for item in sorted(own, key=RUNNABLE.index):
        e = entry(item)
        group = getattr(e, "group", "")
        key = ("group", group) if group else ("setup", e.setup) if e.setup else ("row", shortened(item, e), e.cwd)
        job = jobs.setdefault(key, [])
        same = next((i for i in job if (shortened(i, entry(i)), entry(i).cwd) == (shortened(item, e), e.cwd)), None)
        if same is None:
            job.append(item)
        twin[item] = same or item
    return list(jobs.values()), twin


@pytest.fixture(scope="module")
def results(request, tmp_path_factory) -> dict[tuple[str, str], Result]:
    """Runs the selected commands, two jobs at a time, each job in its own copy of the project (one row per
    launch path; the rows that differ from it only in their arguments in one process, :func:`split_by_launch_path`;
    rows sharing a setup or a group one after another in one copy, :func:`own_jobs`)."""
    wanted = {item.callspec.params["item"] for item in request.session.items
              if getattr(item, "callspec", None) and item.module is request.module and "item" in item.callspec.params}
    base = tmp_path_factory.mktemp("docs")
    home, fmnist = base / "home", fake_fashion_mnist(base / "fashion-mnist", train_per_class=600)
    home.mkdir()
    files = tracked_files()
    own, batch_rows = split_by_launch_path(list(wanted))
    words_env = user_env(base, home)
    batch_argvs = [in_process_argv(i, shell_words((entry(i).cmd or i.text).replace(FM, str(fmnist)), words_env))
                   for i in batch_rows]
    unique = [json.loads(a) for a in dict.fromkeys(json.dumps(a) for a in batch_argvs)]  # the same argv runs once

    def one(job: tuple[int, list[DocItem] | None]) -> list[tuple[tuple[str, str] | None, Result]]:
        n, items = job
        copy = make_copy(base / f"c{n}" / "ltlab", files)
        env = user_env(copy, home)
        if items is None:  # the rows that share a launch path with a row run on its own, in one process
            res = run_shell(f"python {ROOT / 'tests' / 'docs_commands.py'} <<'EOF'\n{json.dumps(unique)}\nEOF",
                            copy, env)
            return [(None, res)]
        t0, out = time.perf_counter(), []
        for s in entry(items[0]).setup:
            r = run_shell(s.replace(FM, str(fmnist)), copy, env)
            assert r.rc == 0 or s.endswith("|| true"), f"setup failed:\n{r}"
        for item in items:
            e = entry(item)
            res = run_shell(shortened(item, e).replace(FM, str(fmnist)), copy if e.cwd == "." else copy.parent, env)
            res.seconds = time.perf_counter() - t0  # the setup included, for the first row of a job
            res.missing = [f for f in e.files if not (copy / f).exists()]
            out.append(((item.kind, item.text), res))
            t0 = time.perf_counter()
        return out

    jobs, twin = own_jobs(own)
    work = ([(-1, None)] if batch_rows else []) + list(enumerate(jobs))  # the longest job first
    with ThreadPoolExecutor(2) as pool:
        done = dict(pair for pairs in pool.map(one, work) for pair in pairs)
    for i in own:  # a row whose shortened command another row of its job ran
        done[(i.kind, i.text)] = done[(twin[i].kind, twin[i].text)]
    timings = sorted(((r.seconds, r.command[:100]) for r in done.values() if r is not None), reverse=True)
    (base / "timings.txt").write_text("\n".join(f"{s:7.1f} s  {c}" for s, c in timings))
    if batch_rows:
        out = done.pop(None)
        parts = re.split(r"<<start (\d+)>>\n", out.output)[1:]
        chunks = dict(zip(map(int, parts[::2]), parts[1::2]))
        for item, argv in zip(batch_rows, batch_argvs):
            if (chunk := chunks.get(unique.index(argv))) is not None:
                rc = re.search(r"<<rc (.*?)>>", chunk).group(1)
                done[(item.kind, item.text)] = Result(item.text, int(rc) if rc.lstrip("-").isdigit() else 99, chunk,
                                                      0.0)
        lost = [i.text for i in batch_rows if (i.kind, i.text) not in done]
        assert not lost, f"the in-process batch stopped before {lost[0]!r}:\n{out}"
    return done


def test_one_row_per_launch_path_runs_as_its_own_process():
    own, batch = split_by_launch_path(RUNNABLE)
    assert len(batch) > 50, "the preset table's data-less rows are checked in one process"
    assert sum(isinstance(entry(i), Run) for i in batch) >= 3, "so are the Fashion-MNIST runs after the first"
    ran = {launch_path(i) for i in own}
    assert {launch_path(i) for i in batch} <= ran, "each launch path checked in process also runs on its own"
    jobs, _ = own_jobs(own)
    demo = next(j for j in jobs if entry(j[0]).setup == (DEMO_RUN,))
    assert len(demo) >= 4, "the rows on the 1-epoch demo run share one training of it"
    sweep = next(j for j in jobs if getattr(entry(j[0]), "group", "") == "sweep_fmnist")
    assert [launch_path(i)[0] for i in sweep] == ["sweep", "sweep"] and "--status" in entry(sweep[1]).cmd


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("item", RUNNABLE, ids=lambda i: f"{i.where}:{(i.text if i.kind == 'shell' else snippet_key(i.text))[:60]}")
def test_doc_command(item: DocItem, results):
    e = entry(item)
    res = results[(item.kind, item.text)]
    if isinstance(e, Fails):
        assert res.rc != 0, f"expected the documented failure ({e.message}), it ran:\n{res}"
        if e.rc is not None:
            assert res.rc == e.rc, f"exit status {res.rc}, documented {e.rc}:\n{res}"
        assert re.search(MESSAGES[e.message][1], res.output), f"not the documented message {e.message!r}:\n{res}"
        if not e.traceback_ok:
            assert "Traceback (most recent call last)" not in res.output, f"a traceback, not one error line:\n{res}"
    else:
        assert res.rc == 0, f"failed ({e.why or 'as shown'}):\n{res}"
    for pattern in e.expect:
        assert re.search(pattern, res.output), f"output lacks {pattern!r}:\n{res}"
    for pattern in getattr(e, "absent", ()):
        assert not re.search(pattern, res.output), f"output has {pattern!r}:\n{res}"
    assert not res.missing, f"not written: {res.missing}\n{res}"
