"""What tests/test_docs.py needs: the commands of the user docs, a new user's copy of the project, running them.

The user docs are README.md, docs/*.md and benchmarks/README.md. A command is a line of a fenced ```bash /
```sh / ```console block (continuation lines joined, comments dropped) or an inline code span in the prose
that starts like a command (``python -m ltlab ...``, ``make ...``); a snippet is a fenced ```python block.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# an inline code span is a command when it starts with one of these
COMMAND_START = re.compile(r"^(python3?|\.venv/bin/\S+|make|bash|torchrun|tensorboard|pip|mamba|conda|papermill|"
                           r"jupyter|sudo|apt-get)(\s|$)")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class DocItem:
    kind: str    # "shell" or "python"
    text: str    # the command (one line, whitespace collapsed) or the snippet
    where: str   # file:line


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "benchmarks" / "README.md"]


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def shell_commands(body: str, lang: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped."""
    out, pending = [], ""
    for raw in body.splitlines():
        line = raw.strip()
        if lang == "console":
            if not pending and not line.startswith("$ "):
                continue  # output
            line = line[2:] if line.startswith("$ ") else line
        cont = line.endswith("\\")
        pending += " " + strip_comment(line.rstrip("\\").rstrip() if cont else line)
        if not cont:
            if pending.strip():
                out.append(" ".join(pending.split()))
            pending = ""
    return out


def extract(root: Path = ROOT) -> list[DocItem]:
    """Every shell command and python snippet of the user docs, in document order."""
    items: list[DocItem] = []
    for path in doc_files(root):
        rel = path.relative_to(root).as_posix()
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if m:
                start, lang = i, m.group(1).lower()
                i += 1
                while i < len(lines) and not lines[i].startswith("```"):
                    i += 1
                body = "\n".join(lines[start + 1:i])
                if lang in SHELL_LANGS:
                    items += [DocItem("shell", c, f"{rel}:{start + 1}") for c in shell_commands(body, lang)]
                elif lang == "python":
                    items.append(DocItem("python", body.strip() + "\n", f"{rel}:{start + 1}"))
            else:
                for span in re.findall(r"`([^`]+)`", lines[i]):
                    if COMMAND_START.match(span.strip()) and " " in span.strip():  # not a bare name
                        items.append(DocItem("shell", " ".join(span.split()), f"{rel}:{i + 1}"))
            i += 1
    return items


# ------------------------------------------------------------------------------------ a new user's copy
def tracked_files(root: Path = ROOT) -> list[str]:
    """The files a clone has (tracked, plus new files git does not ignore), as paths relative to ``root``."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True).stdout.decode()
        return [p for p in out.split("\0") if p and (root / p).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but the usual junk
        skip = {".git", ".venv", "runs", "__pycache__", ".pytest_cache"}
        return [p.relative_to(root).as_posix() for p in root.rglob("*")
                if p.is_file() and not skip & set(p.relative_to(root).parts)]


def make_copy(dest: Path, files: list[str], root: Path = ROOT) -> Path:
    """The project as a clone has it (the committed figures/ left out: nothing runs from them), with
    ``.venv`` pointing at this interpreter's environment as ``make install`` would have made it."""
    for rel in files:
        if rel.startswith("figures/"):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    # ltlab's bytecode too (tests/conftest.py compiles it; valid in the copy, whose sources keep their times): the
    # copy's processes do not write any (PYTHONDONTWRITEBYTECODE) and would compile ltlab again each (0.25 s)
    for pyc in (root / "ltlab").rglob("__pycache__/*.pyc"):
        target = dest / pyc.relative_to(root)
        if target.parent.parent.is_dir():  # a package the copy has
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(pyc, target)
    (dest / ".venv").symlink_to(Path(sys.prefix))
    return dest


def user_env(copy: Path, home: Path) -> dict[str, str]:
    """A new user's shell after ``make install``: the venv first on PATH, ltlab importable from the copy,
    a fresh home (no ~/data, no ~/.cache/ltlab/data), no GPU, no LTLAB_* settings of ours."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LTLAB_", "PYTEST", "COV_", "JUPYTER", "VIRTUAL_ENV", "SLURM",
                                "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"))}  # under `make test`: a
    # nested make would print "make[1]: Entering directory" lines into `make -n`'s recipe
    env.update(HOME=str(home), PYTHONPATH=str(copy), VIRTUAL_ENV=str(copy / ".venv"), CUDA_VISIBLE_DEVICES="",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
               OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    return env


def fake_fashion_mnist(folder: Path, train_per_class: int = 120, test_per_class: int = 10, seed: int = 0) -> Path:
    """Fashion-MNIST's four IDX .gz files (28x28 uint8, 10 classes), small: class c is a brighter band."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train_per_class), ("t10k", test_per_class)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), n)
        rng.shuffle(labels)
        images = rng.integers(0, 60, (len(labels), 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c:2 * c + 8] += 150
        for kind, arr, magic in (("images-idx3-ubyte", images, 0x803), ("labels-idx1-ubyte", labels, 0x801)):
            head = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
            with gzip.open(folder / f"{prefix}-{kind}.gz", "wb") as f:
                f.write(head + arr.tobytes())
    return folder


@dataclass
class Result:
    command: str
    rc: int
    output: str
    seconds: float
    missing: list[str] = field(default_factory=list)  # files the entry expects that were not written

    def __str__(self) -> str:
        tail = self.output[-4000:]
        return f"$ {self.command}\n(exit {self.rc}, {self.seconds:.1f} s)\n{tail}"


def run_shell(command: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> Result:
    """``command`` through bash (brace expansion, ~ and quotes as a user's shell has them)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
        rc, out = p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as exc:
        rc, out = -9, (exc.stdout or b"").decode(errors="replace") + f"\n[timed out after {timeout} s]"
    return Result(command, rc, out, time.perf_counter() - t0)


def preset_rows_main(argvs: list[list[str]]) -> None:
    """Run ``python -m ltlab`` argument lists in one process (rows that share their launch path with a row run
    on its own: the preset table's data-less rows, the Fashion-MNIST runs after the first); prints
    ``<<start i>>`` before and one ``<<rc>>`` marker line after each command's output."""
    from ltlab.launch.cli import main

    for i, argv in enumerate(argvs):
        print(f"<<start {i}>>", flush=True)
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # noqa: BLE001 - reported as the row's failure, with the traceback
            import traceback
            traceback.print_exc()
            rc = f"raised {type(exc).__name__}"
        print(f"<<rc {rc}>>", flush=True)


if __name__ == "__main__":
    import json
    preset_rows_main(json.loads(sys.stdin.read()))
