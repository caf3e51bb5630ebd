"""tools/install.py (make install): pip's configuration handed to uv, with pip's precedence, and pip where uv would
not honour a setting."""
from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("ltlab_install", Path(__file__).resolve().parent.parent / "tools"
                                              / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)

# what `pip config list` prints on a machine with a local mirror, wheels on disk and a version cap
LISTING = """global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels'
"""


def test_pip_settings_take_environment_over_install_over_global():
    got = install.pip_settings("global.index-url='https://a/simple'\ninstall.index-url='https://b/simple'\n"
                               ":env:.index-url='https://c/simple'\nglobal.timeout='9'\nnot a setting\n")
    assert got == {"index-url": "https://c/simple", "timeout": "9"}
    got = install.pip_settings(":env:.index-url='https://c/simple'\nglobal.index-url='https://a/simple'\n")
    assert got["index-url"] == "https://c/simple"  # whatever the order of the lines


def test_every_source_pip_uses_goes_to_uv():
    args, env = install.uv_arguments(install.pip_settings(LISTING))
    pairs = list(zip(args[::2], args[1::2]))
    assert ("--index-strategy", "unsafe-best-match") in pairs  # pip's rule: the best version over all indexes
    assert ("--extra-index-url", "file:///opt/pypi/simple") in pairs
    assert ("--extra-index-url", "file:///opt/pypi-more/simple") in pairs
    assert ("--find-links", "/opt/wheels") in pairs and ("--constraint", "/etc/xdg/pip/constraints.txt") in pairs
    assert "--default-index" not in args  # none configured: uv's default, PyPI, as pip's
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "UV_HTTP_TIMEOUT": "180"}


def test_index_proxy_trusted_hosts_and_no_index():
    args, env = install.uv_arguments({"index-url": "https://mirror/simple", "trusted-host": "mirror other",
                                      "proxy": "http://proxy:3128", "no-index": "true"})
    assert args[args.index("--default-index") + 1] == "https://mirror/simple"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--allow-insecure-host"] == ["mirror", "other"]
    assert "--no-index" in args and env == {"HTTP_PROXY": "http://proxy:3128", "HTTPS_PROXY": "http://proxy:3128"}


def test_a_setting_uv_would_not_honour_means_pip():
    assert install.uv_arguments({"find-links": "/w", "only-binary": ":all:"}) == "only-binary"
    assert install.uv_arguments({"pre": "true"}) == "pre"


class _Runs:
    """Stands in for subprocess.run: records each command, answers pip's config listing and uv's exit status."""

    def __init__(self, uv_rc: int):
        self.commands, self.uv_rc = [], uv_rc

    def __call__(self, command, **kwargs):
        from types import SimpleNamespace

        self.commands.append([str(c) for c in command])
        if command[1:] == ["-m", "pip", "config", "list"]:
            return SimpleNamespace(returncode=0, stdout=LISTING)
        return SimpleNamespace(returncode=self.uv_rc if str(command[0]).endswith("/uv") else 0, stdout="")


def _install(tmp_path, monkeypatch, uv_rc: int, uv_exists: bool = True) -> list[list[str]]:
    (tmp_path / "bin").mkdir(parents=True)
    if uv_exists:
        (tmp_path / "bin" / "uv").touch()
    runs = _Runs(uv_rc)
    monkeypatch.setattr(install.subprocess, "run", runs)
    assert install.install(str(tmp_path / "bin" / "python"), ".[test]") == 0
    return runs.commands


def test_uv_installs_with_pips_sources_and_pip_is_not_run(tmp_path, monkeypatch):
    commands = _install(tmp_path, monkeypatch, uv_rc=0)
    uv = commands[-1]
    assert uv[0].endswith("/bin/uv") and uv[1:3] == ["pip", "install"] and uv[-2:] == ["-e", ".[test]"]
    assert "--compile-bytecode" in uv and "file:///opt/pypi/simple" in uv and "/etc/xdg/pip/constraints.txt" in uv
    assert not any(c[1:4] == ["-m", "pip", "install"] and c[-1] == ".[test]" for c in commands)


def test_pip_installs_when_uv_fails_or_is_missing(tmp_path, monkeypatch):
    for kwargs in ({"uv_rc": 2}, {"uv_rc": 0, "uv_exists": False}):
        commands = _install(tmp_path / str(len(kwargs)), monkeypatch, **kwargs)
        assert commands[-1][1:] == ["-m", "pip", "install", "-q", "-e", ".[test]"]
