"""Install the project into a venv with uv, from the package sources pip is configured with: make install.

    python tools/install.py .venv/bin/python '.[analysis,test]'

pip installs wheels one after another and then byte-compiles every file: 70-90 s for ltlab's dependencies
(torch's CUDA wheels alone are 6 GB unpacked). uv (from PyPI, installed into the venv first) unpacks them in
parallel and compiles in parallel: about 35 s on 2 cores, the same versions. uv does not read pip's
configuration, so the index, extra indexes, find-links, constraints, certificate bundle, trusted hosts, proxy
and timeout that ``pip config list`` shows (configuration files and ``PIP_*`` variables) are handed to it as
flags and variables; ``--index-strategy unsafe-best-match`` keeps pip's rule of taking the best version across
all indexes. pip does the install instead when uv cannot be installed or fails, or when pip's configuration
has a setting uv would not honour (its name is printed).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

# pip settings uv gets (index, links, constraints, certificate, proxy, timeout) or that change no choice of package
KNOWN = {"disable-pip-version-check", "no-input", "progress-bar", "quiet", "verbose", "no-color", "log",
           "cache-dir", "no-cache-dir", "root-user-action", "break-system-packages", "no-python-version-warning",
           "timeout", "default-timeout", "retries", "cert", "proxy", "trusted-host", "index-url", "extra-index-url",
           "find-links", "constraint", "no-index", "require-virtualenv", "use-feature", "upgrade-strategy"}
# pip's list settings (space-separated values) and the uv flag each value goes to
LIST_FLAGS = {"extra-index-url": "--extra-index-url", "find-links": "--find-links", "constraint": "--constraint",
              "trusted-host": "--allow-insecure-host"}


def pip_settings(listing: str) -> dict[str, str]:
    """``pip config list`` output (``section.key='value'`` lines) as one setting per key, with pip's precedence:
    the ``:env:`` section (``PIP_*`` variables) over ``install.`` over ``global.``."""
    rank = {"global": 0, "install": 1, ":env:": 2}
    best: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        name, sep, value = line.partition("=")
        section, dot, key = name.strip().rpartition(".")
        if not sep or not dot or section not in rank:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key not in best or rank[section] >= best[key][0]:
            best[key] = (rank[section], value)
    return {k: v for k, (_, v) in best.items()}


def uv_arguments(settings: dict[str, str]) -> tuple[list[str], dict[str, str]] | str:
    """The uv flags and environment variables for pip's settings, or the name of a setting uv would not honour."""
    unknown = sorted(k for k in settings if k not in KNOWN)
    if unknown:
        return unknown[0]
    args, env = ["--index-strategy", "unsafe-best-match"], {}
    if settings.get("index-url"):
        args += ["--default-index", settings["index-url"]]
    for key, flag in LIST_FLAGS.items():
        for value in settings.get(key, "").split():
            args += [flag, value]
    if settings.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        args.append("--no-index")
    if settings.get("cert"):
        env["SSL_CERT_FILE"] = settings["cert"]
    if settings.get("proxy"):
        env["HTTP_PROXY"] = env["HTTPS_PROXY"] = settings["proxy"]
    timeout = settings.get("timeout") or settings.get("default-timeout")
    if timeout:
        env["UV_HTTP_TIMEOUT"] = timeout
    return args, env


def install(python: str, spec: str) -> int:
    """Install ``spec`` editable into the venv of ``python``: uv where it can, else pip; pip's exit status."""
    pip = [python, "-m", "pip"]
    listing = subprocess.run([*pip, "config", "list"], capture_output=True, text=True).stdout
    how = uv_arguments(pip_settings(listing))
    uv = Path(python).parent / "uv"
    if isinstance(how, str):
        print(f"pip's configuration sets {how}, which uv would not honour: installing with pip")
    elif subprocess.run([*pip, "install", "-q", "uv"]).returncode != 0 or not uv.exists():
        print("uv could not be installed: installing with pip")
    else:
        args, env = how
        command = [str(uv), "pip", "install", "-q", "--python", python, "--compile-bytecode", *args, "-e", spec]
        if subprocess.run(command, env={**os.environ, **env}).returncode == 0:
            return 0
        print(f"uv failed ({shlex.join(command)}): installing with pip")
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"])
    return subprocess.run([*pip, "install", "-q", "-e", spec]).returncode


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tools/install.py VENV_PYTHON SPEC   (e.g. .venv/bin/python '.[analysis,test]')")
    sys.exit(install(sys.argv[1], sys.argv[2]))
