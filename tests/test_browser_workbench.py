"""Real browser: the workbench of 09_tuning driven in JupyterLab (headless Debian Chromium, playwright).

Run All on 09_tuning (tiny search), then as a user: GCL is picked, drag the ``noise_mul`` slider, Start a short
run, set another value, Start a second run and Stop it, select it and Continue it; the comparison table shows
both runs with labels naming ``noise_mul``; "vary one value" over three values draws its figure. A screenshot of
the panel goes to ``$LTLAB_SCREENSHOT_DIR/workbench.png`` (``make figures-workbench`` points it at figures/),
else to the test's temporary folder. Reuses the JupyterLab helpers of tests/test_browser.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_browser import (CHROMIUM, PROMPTS, TOKEN, Deadline, _free_port, _lab_env, _problems, _run_all,
                          _save, _start_kernel, _stop, _wait_ready, _wait_rendered)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="Debian Chromium absent: apt-get install chromium (make system-deps)")]
# the search's trials and their content are checked headless (test_workbench.py); here 2 trials, enough for
# every search figure (parameter importance needs two complete trials) to draw in JupyterLab
PARAMS = {"epochs": 2, "device": "cpu", "search_trials": 2, "run_search": True}
SECOND_EPOCHS = 40  # the run that is stopped and continued


def _prepare(tmp: Path) -> tuple[Path, Path]:
    import papermill as pm
    from papermill.parameterize import parameterize_notebook

    home, root = tmp / "home", tmp / "lab"
    root.mkdir()
    nb = pm.iorw.load_notebook_node(str(ROOT / "notebooks" / "09_tuning.ipynb"))
    nb = parameterize_notebook(nb, {**PARAMS, "out_root": str(tmp / "search"), "run_root": str(tmp / "bench")})
    pm.iorw.write_ipynb(nb, str(root / "09_tuning.ipynb"))
    return home, root


def _wait_for(page, what: str, check, seconds: float = 240.0) -> None:
    t0 = time.monotonic()
    while not check():
        status = page.locator(".ltlab-wb-status").first.inner_text()
        assert "failed" not in status, status
        assert time.monotonic() - t0 < seconds, f"timed out waiting for {what}; status: {status}"
        page.wait_for_timeout(300)


def _row(page, name: str):
    """The workbench form row of a hyper-parameter (slider + number box)."""
    return page.locator(".widget-hbox", has=page.locator(".widget-label", has_text=re.compile(rf"^{name}$"))).first


def _drag(page, row, fraction: float) -> None:
    handle = row.locator(".noUi-handle").bounding_box()
    track = row.locator(".noUi-target").bounding_box()
    y = handle["y"] + handle["height"] / 2
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], y, steps=8)
    page.mouse.up()


def _set_box(page, name: str, value) -> None:
    """Type a value into a form row's number box; Enter sends it to the kernel. The wait only sees the page keep the
    value (the kernel may rewrite the box); what the kernel got shows in the runs it starts (the table's epochs)."""
    box = _row(page, name).locator("input").last
    box.fill(str(value))
    box.press("Enter")
    _wait_for(page, f"the {name} box to hold {value}", lambda: float(box.input_value()) == float(value), 20)


def _diagnosis(page, root: Path, deadline) -> str:
    """What a failure message needs: the cells' prompts, their outputs (saved notebook), the server log's tail."""
    prompts = page.locator(PROMPTS).all_inner_texts()
    try:
        nb = _save(page, root / "09_tuning.ipynb", deadline)
        outs = [[{k: str(o.get(k, ""))[:200] for k in ("output_type", "name", "text", "ename", "evalue", "data")}
                 for o in c.get("outputs", [])] for c in nb["cells"] if c["cell_type"] == "code"]
        problems = _problems(nb)
    except AssertionError as e:
        outs, problems = f"(not saved: {e})", []
    log = root.parent / "jupyter.log"
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    return f"prompts {prompts}; problems {problems}; outputs {outs}; jupyter.log ends:\n{tail}"


def _table_text(page) -> str:
    tables = page.locator(".ltlab-wb-table table")
    return tables.first.inner_text() if tables.count() else ""


def test_workbench_in_jupyterlab(tmp_path):
    try:
        import playwright.sync_api as pw
    except ImportError:
        pytest.fail("the browser test needs the PyPI package playwright: pip install playwright")
    home, root = _prepare(tmp_path)
    env = _lab_env(tmp_path, home)
    port, log = _free_port(), open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}",
                             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
                             f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True", "--LabApp.news_url=",
                             "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True"],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    shots = Path(os.environ.get("LTLAB_SCREENSHOT_DIR") or tmp_path)
    try:
        _wait_ready(base, proc, tmp_path / "jupyter.log")
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                # tall from the start: the whole panel fits for its screenshot, and no resize re-renders the figures
                _scenario(browser.new_page(viewport={"width": 1400, "height": 3400}), base, root, shots,
                          pw.TimeoutError)
            finally:
                browser.close()
    finally:
        _stop(proc, base)
        log.close()


def _scenario(page, base: str, root: Path, shots: Path, timeout_error) -> None:
    deadline = Deadline(600)
    _start_kernel(base, "09_tuning.ipynb")
    page.goto(f"{base}/lab/tree/09_tuning.ipynb?token={TOKEN}")
    page.locator(".jp-Notebook").wait_for(timeout=60_000)
    _run_all(page, deadline, timeout_error)
    _wait_rendered(page, deadline)
    status = page.locator(".ltlab-wb-status").first
    noise = _row(page, "noise_mul")
    # the form appears when the workbench cell has run: on a loaded 2-core box (make test runs three workers) that can
    # take longer than playwright's default 30 s after the other outputs drew
    try:
        noise.wait_for(state="visible", timeout=240_000)
    except timeout_error:  # the cells, their outputs and the server log say why (a kernel that never connected
        # once left Run All with only its last cell run; _run_all now runs the cells again when it sees that)
        raise AssertionError(f"the workbench form did not appear: {_diagnosis(page, root, deadline)}") from None
    noise.scroll_into_view_if_needed()
    box = noise.locator("input")
    _drag(page, noise, 0.2)  # noise_mul ~ 0.3; the kernel copies the slider's value into the box
    _wait_for(page, "the noise_mul box to follow its slider", lambda: abs(float(box.input_value()) - 0.5) > 0.05, 20)
    first_value = float(box.input_value())
    start = page.locator("button", has_text=re.compile(r"^Start$")).first
    start.click()
    _wait_for(page, "the first run", lambda: "finished" in status.inner_text())
    _drag(page, noise, 0.8)  # a second value
    _wait_for(page, "the second value", lambda: abs(float(box.input_value()) - first_value) > 0.05, 20)
    second_value = float(box.input_value())
    # the second run gets 40 epochs and Stop is clicked at once (the kernel handles the two clicks in order), so the
    # stop lands long before its last epoch: a digits epoch takes about 0.1 s on an idle core, and a 2- or 12-epoch
    # run could end before the kernel saw the click ("finished", never "stopped")
    _set_box(page, "epochs", SECOND_EPOCHS)
    start.click()
    page.locator("button", has_text=re.compile(r"^Stop$")).first.click()
    _wait_for(page, "the second run to stop", lambda: "stopped" in status.inner_text())
    _set_box(page, "epochs", PARAMS["epochs"])  # the varied runs are short again
    assert "stopped" in _table_text(page) and f"/{SECOND_EPOCHS}" in _table_text(page), _table_text(page)
    runs = page.locator(".ltlab-wb-runs select").first
    second = runs.locator("option").nth(1).inner_text()
    runs.select_option(label=second)
    page.locator("button", has_text="Continue").first.click()
    _wait_for(page, "the continued run", lambda: "finished" in status.inner_text() and "stopped" not in
              _table_text(page))
    text = _table_text(page)
    assert text.count("complete") == 2 and f"noise_mul={second_value:g}" in text, text
    vary = page.locator(".widget-dropdown", has=page.locator(".widget-label", has_text=re.compile(r"^vary$")))
    vary.locator("select").select_option("noise_mul")
    page.locator(".widget-text", has=page.locator(".widget-label", has_text="values")).locator("input").fill(
        "0.2, 0.6, 1.0")
    page.locator("button", has_text=re.compile(r"^Vary$")).first.click()
    _wait_for(page, "vary one value", lambda: "varied noise_mul: 3 runs" in status.inner_text(), 420)
    page.wait_for_timeout(2000)
    panel = page.locator(".widget-vbox", has=page.locator("button", has_text="Vary")).first
    panel.scroll_into_view_if_needed()
    shots.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(shots / "workbench.png"))
    nb = _save(page, root / "09_tuning.ipynb", deadline)
    assert not _problems(nb), _problems(nb)
