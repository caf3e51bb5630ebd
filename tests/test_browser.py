"""Real browser: every notebook 01-08 runs (Run All) in one JupyterLab driven by headless Debian Chromium.

After a demo run (``make demo``'s: 01's defaults, 30 epochs of digits-LT, in ``$LTLAB_HOME/runs/demo``), each
notebook is opened in JupyterLab and run with Run > Run All Cells; the test fails on any error output or on a
cell left unexecuted, saves a screenshot as ``<shots>/jupyterlab/<notebook>.png``, and checks what a user
should see: 01 shows a notebook progress bar and the compact config table, 06's PN-tau slider moves the
accuracies (``<shots>/browser_widgets.png``). ``<shots>`` is a temporary folder holding the first screen of
each notebook (for a failure's post-mortem), so the suite leaves the tracked tree as it was; ``make
screenshots`` sets ``LTLAB_SCREENSHOTS=figures`` to refresh the committed ones, each the whole notebook (a
window as tall as the notebook: Chromium redraws every figure at that size, about 1 s of CPU per notebook that
the suite does not spend). Notebooks run with their default parameters
except where ``INJECTED`` says why not; those values go in through papermill's ``injected-parameters`` cell,
which the screenshot shows.

Needs the Debian package ``chromium`` and the PyPI package ``playwright`` (its Python driver only; the
system Chromium is used through ``executable_path``, no browser download). Deselect with -m "not browser".
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "ltlab-browser-test"
WIDTH = int(os.environ.get("LTLAB_BROWSER_WIDTH", "1400"))  # the window; screenshots at another width: set it
NOTEBOOK_DEADLINE_S = 150  # one notebook: kernel start, Run All, save, screenshot
MAX_SHOT_HEIGHT = 16000
PROMPTS = ".jp-Notebook .jp-CodeCell .jp-InputPrompt"  # a code cell's [n] / [*] / [ ]

# parameters injected where a default Run All would take minutes (or write outside the test's folders);
# "{demo}" and "{paper_runs}" are filled in by the fixture
INJECTED = {
    "01_train.ipynb": {},
    "02_tsne.ipynb": {},
    "03_per_class_accuracy.ipynb": {},
    "04_gradient_ratios.ipynb": {},
    "05_schedules.ipynb": {},
    "06_widgets.ipynb": {"run_dir": "{demo}"},  # default trains a 5-epoch run in a new /tmp folder
    # default: 3 losses x 3 seeds x 10 epochs, each a papermill process (minutes); here 2 one-epoch runs
    "07_sweep.ipynb": {"grid": {"loss": ["ce"]}, "seeds": [0, 1],
                       "base_params": {"dataset": "digits_lt", "epochs": 1, "batch_size": 64, "lr": 0.05,
                                       "progress": False}},
    # default trains 11 Fashion-MNIST runs of 30 epochs (~52 min); here 1-epoch digits runs, PNG only, t-SNE
    # panels of at most 200 points (the figures' content is checked headless in test_interactive_notebooks.py)
    "08_paper_figures.ipynb": {"run_dirs": "{paper_runs}", "formats": ["png"], "max_points": 200},
}

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="Debian Chromium absent: apt-get install chromium (make system-deps)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fill(value, subs: dict):
    if isinstance(value, str) and value in subs:
        return subs[value]
    return {k: _fill(v, subs) for k, v in value.items()} if isinstance(value, dict) else value


def _prepare(tmp: Path) -> tuple[Path, Path]:
    """``$LTLAB_HOME`` with a tiny demo run, and the JupyterLab root with every notebook (parameters injected)."""
    import papermill as pm
    from papermill.parameterize import parameterize_notebook

    import ltlab
    from ltlab.viz import paper_figures

    home, root = tmp / "home", tmp / "lab"
    root.mkdir()
    demo = ltlab.run(dataset="digits_lt", epochs=30, lr=0.05, batch_size=64, weight_decay=5e-4, lr_schedule="cosine",
                     progress=False, device="cpu", run_dir=str(home / "runs" / "demo"))  # make demo, in ~3 s
    paper = paper_figures.train(1, tmp / "paper_runs", log=lambda _: None, afg_epochs=2,
                                protocol=dict(dataset="digits_lt", imbalance_factor=50, dataset_params={"n_max": 60},
                                              batch_size=128, eval_every=1, warmup_epochs=0))
    subs = {"{demo}": str(demo.dir), "{paper_runs}": {label: str(r.dir) for label, r in paper.items()}}
    for name, params in INJECTED.items():
        nb = pm.iorw.load_notebook_node(str(ROOT / "notebooks" / name))
        if params:
            nb = parameterize_notebook(nb, _fill(params, subs))
        pm.iorw.write_ipynb(nb, str(root / name))
    return home, root


def _lab_env(tmp: Path, home: Path) -> dict:
    """A user's desktop session: ltlab from this checkout, runs under ``home``, progress bars on (no CI)."""
    cfg = tmp / "jupyter"
    # render every cell (no windowing), so off-screen outputs exist in the page; no news pop-up
    for ext, name, text in (("notebook-extension", "tracker", '{"windowingMode": "none"}'),
                            ("apputils-extension", "notification", '{"fetchNews": "false"}')):
        path = cfg / "settings" / "@jupyterlab" / ext / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True)
        path.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "LTLAB_PROGRESS")}
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**env, "JUPYTER_CONFIG_DIR": str(cfg / "config"), "JUPYTER_RUNTIME_DIR": str(cfg / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(cfg / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(cfg / "ws"),
            "LTLAB_HOME": str(home), "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One JupyterLab server (free localhost port) over the prepared notebooks, and one Chromium."""
    try:
        import playwright.sync_api as pw
    except ImportError:  # a test dependency (pyproject test extra), unlike the system browser: fail, don't skip
        pytest.fail("the browser test needs the PyPI package playwright: pip install playwright "
                    "(its driver only; the Debian chromium is used, no browser download)")
    tmp = tmp_path_factory.mktemp("jupyterlab")
    home, root = _prepare(tmp)
    env = _lab_env(tmp, home)
    where = subprocess.run([sys.executable, "-c", "import ltlab; print(ltlab.__file__)"], env=env, cwd=root,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(ROOT), f"kernels would import ltlab from {where}, not {ROOT}"
    port, log = _free_port(), open(tmp / "jupyter.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}",
                             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
                             f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
                             "--LabApp.news_url=", "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True"],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, tmp / "jupyter.log")
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                yield base, root, browser, pw.TimeoutError
            finally:
                browser.close()
    finally:
        _stop(proc, base)
        log.close()


def _wait_ready(base: str, proc: subprocess.Popen, log: Path) -> None:
    t0 = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                pytest.fail("JupyterLab did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.3)


def _api(base: str, path: str, body: dict | None = None, method: str | None = None) -> dict:
    req = urllib.request.Request(f"{base}{path}", method=method or ("POST" if body is not None else "GET"),
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def _start_kernel(base: str, notebook: str) -> str:
    """Open the notebook's session (Python 3 kernel) through the REST API before the page loads; its id.

    JupyterLab then attaches to this session instead of starting a kernel itself, which on a busy
    machine can race with "Run All" and end in a "Select Kernel" dialog or a dropped kernel.
    """
    return _api(base, "/api/sessions", {"path": notebook, "name": notebook, "type": "notebook",
                                        "kernel": {"name": "python3"}})["id"]


def _stop(proc: subprocess.Popen, base: str) -> None:
    """Shut the server down through its API (it stops its kernels), then end its process group if needed."""
    try:
        _api(base, "/api/shutdown", {})
        proc.wait(15)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):  # the server, or kernels it left behind in its group
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    proc.wait(5)


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def ms(self) -> float:
        return max(1000.0, 1000 * (self.end - time.monotonic()))

    def over(self) -> bool:
        return time.monotonic() > self.end


KERNEL_READY = """() => {
  const ctx = window.jupyterapp?.shell.currentWidget?.sessionContext;
  const kernel = ctx?.session?.kernel;
  return !!kernel && ctx.isReady && kernel.connectionStatus === "connected" && kernel.status === "idle";
}"""


def _run_all(page, deadline: Deadline, timeout_error) -> None:
    """Run > Run All Cells, accepting a kernel dialog if one comes up; returns when every code cell has run (or
    one stopped the run with an error, which the caller's ``_problems`` reports) and none is queued or running.

    A kernel JupyterLab replaces while the cells are queued (it can start its own beside the one the test opened)
    drops the queue after the first cell: that leaves cells unrun and no error, and Run All is clicked again. So
    does a kernel that took too long to connect on a loaded box ("Kernel never reached an 'alive' state" in the
    server log), after which only the last cell had run (and raised a NameError): an error counts as the end of
    Run All only when the cells that ran come before all that did not, as when Run All stops at an error.
    """
    prompts = page.locator(PROMPTS)
    errors = page.locator(".jp-Notebook [data-mime-type='application/vnd.jupyter.stderr']")
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    clicked, dialogs = -1e9, []
    while True:
        texts = prompts.all_inner_texts()
        ran = [bool(re.search(r"\[\d+\]", t)) for t in texts]
        in_order = ran == sorted(ran, reverse=True)  # the cells that ran, then those that did not
        if any(ran) and not any("*" in t for t in texts) and (all(ran) or (in_order and errors.count())):
            return
        if dialog.count():  # JupyterLab may ask which kernel to use: accept its proposal (Python 3)
            box = page.locator(".jp-Dialog").first.element_handle()
            dialogs.append(box.inner_text()[:120])
            dialog.first.click()
            # click each dialog once: a second click on a closing dialog starts yet another kernel
            try:
                box.wait_for_element_state("hidden", timeout=min(5000.0, deadline.ms()))
            except timeout_error:
                pass
        elif not any("*" in t for t in texts) and time.monotonic() - clicked > 15:
            # Run > Run All Cells from the menu bar (again if a click came before the kernel was ready)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
            clicked = time.monotonic()
        if deadline.over():
            raise AssertionError(f"Run All did not finish in time; prompts {texts}; dialogs accepted: {dialogs}")
        page.wait_for_timeout(300)


def _save(page, path: Path, deadline: Deadline) -> dict:
    """File > Save Notebook; the saved notebook (outputs included) once it is on disk."""
    before = path.stat().st_mtime_ns
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator(".lm-Menu-item[data-command='docmanager:save']").click()
    while path.stat().st_mtime_ns == before:
        assert not deadline.over(), f"{path.name} was not saved"
        page.wait_for_timeout(200)
    page.wait_for_timeout(300)  # the rename of JupyterLab's atomic save
    return json.loads(path.read_text())


def _problems(nb: dict) -> list[str]:
    """Error outputs, code cells Run All left unexecuted, and stderr text that reports an error."""
    counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"]
    out = [] if counts == sorted(counts, key=lambda n: n or 0) else [f"cells ran out of order: {counts}"]
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        if cell.get("execution_count") is None:
            out.append(f"code cell {i} did not run")
        for o in cell.get("outputs", []):
            if o["output_type"] == "error":
                out.append(f"code cell {i}: {o['ename']}: {o['evalue']}")
            elif o.get("name") == "stderr" and re.search(r"Traceback|Error|Warning", "".join(o["text"])):
                out.append(f"code cell {i} stderr: {''.join(o['text'])[:500]}")
    return out


def _wait_rendered(page, deadline: Deadline) -> None:
    """Until every plotly output has drawn its SVG and every widget output its view."""
    plots = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.plotly.v1+json']")
    widgets = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.widget-view+json']")
    while (page.locator(".jp-OutputArea-output .main-svg").count() < plots.count()
           or page.locator(".jp-OutputArea-output .widget-box, .jp-OutputArea-output .widget-inline-hbox")
           .count() < widgets.count()):
        assert not deadline.over(), "plotly figures or widgets did not render"
        page.wait_for_timeout(300)
    page.wait_for_timeout(500)


def _screenshot(page, path: Path) -> None:
    """For ``make screenshots`` (``$LTLAB_SCREENSHOTS``) the whole notebook: the window made as tall as the
    notebook's content, one screenshot down to the end of its last cell (not JupyterLab's blank scroll-past-the-end
    space); in the suite, the first screen."""
    if not os.environ.get("LTLAB_SCREENSHOTS"):
        page.screenshot(path=str(path))
        return
    outer = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
    extra = page.evaluate("(sel) => { const e = document.querySelector(sel); "
                          "return e ? e.scrollHeight - e.clientHeight : 0; }", outer)
    page.set_viewport_size({"width": WIDTH, "height": min(MAX_SHOT_HEIGHT, 1000 + int(extra) + 40)})
    page.wait_for_timeout(800)  # relayout
    page.evaluate("(sel) => document.querySelector(sel)?.scrollTo(0, 0)", outer)
    bottom = page.evaluate("(sel) => { const c = document.querySelectorAll(sel + ' .jp-Cell'); "
                           "return c.length ? c[c.length - 1].getBoundingClientRect().bottom : 0; }", outer)
    height = page.viewport_size["height"]
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": WIDTH, "height": min(height, int(bottom) + 24)
                                          if bottom > 0 else height})


def _check_train(page) -> None:
    """A user's Run All on 01: tqdm's notebook bar (a widget, not red stderr text) and the config table."""
    bars = page.locator(".jp-OutputArea-output .widget-hprogress")
    assert bars.count() >= 1, "no notebook progress bar"
    box = bars.first.bounding_box()
    assert box is not None and box["width"] >= 100, f"the notebook progress bar is squeezed to {box}"
    config = page.locator(".jp-OutputArea-output", has_text="fields differ from the defaults").first
    assert config.locator("table").count() == 1, "no RunConfig table"
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0


def _shot_numbers(page) -> dict[str, str]:
    text = page.locator(".ltlab-shots").first.inner_text()
    return dict(re.findall(r"(overall|many|medium|few)\s+([01]\.\d{4})", text))


def _check_posthoc_slider(page, shots: Path) -> None:
    """06: dragging the PN-tau slider changes many/medium/few accuracy; the panel's screenshot is kept."""
    page.locator(".ltlab-shots").first.scroll_into_view_if_needed()
    before = _shot_numbers(page)
    assert set(before) == {"overall", "many", "medium", "few"}, page.locator(".ltlab-shots").first.inner_text()
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text="PN τ")).first
    slider.scroll_into_view_if_needed()
    box = slider.locator(".noUi-handle").bounding_box()
    track = slider.locator(".noUi-target").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + 0.5 * track["width"], box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    readout = slider.locator(".widget-readout").inner_text()
    assert float(readout) > 0.5, f"the PN-tau slider did not move (readout {readout})"
    t0, after = time.monotonic(), _shot_numbers(page)
    while after == before and time.monotonic() - t0 < 15:
        page.wait_for_timeout(200)
        after = _shot_numbers(page)
    assert any(after[k] != before[k] for k in ("many", "medium", "few")), (before, after)
    panel = page.locator(".widget-vbox", has=page.locator(".ltlab-shots")).first
    panel.scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # let plotly finish redrawing the bars
    panel.screenshot(path=str(shots / "browser_widgets.png"))


CHECKS = {"01_train.ipynb": lambda page, shots: _check_train(page), "06_widgets.ipynb": _check_posthoc_slider}


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: ``$LTLAB_SCREENSHOTS`` (``make screenshots``: figures/), else a temporary folder."""
    folder = os.environ.get("LTLAB_SCREENSHOTS")
    return Path(folder).resolve() if folder else tmp_path_factory.mktemp("screenshots")


@pytest.mark.parametrize("name", list(INJECTED))
def test_notebook_runs_in_jupyterlab(lab, shots, name):
    base, root, browser, timeout_error = lab
    deadline = Deadline(NOTEBOOK_DEADLINE_S)
    session = _start_kernel(base, name)
    page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
    page.set_default_timeout(15_000)
    try:
        # a workspace of its own: the default one would reopen the notebooks of earlier tests (and their kernels)
        page.goto(f"{base}/lab/workspaces/{name[:2]}/tree/{name}?token={TOKEN}", timeout=deadline.ms())
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=deadline.ms())
        # the page's kernel connection is up and idle: cells sent before that can run out of order
        page.wait_for_function(KERNEL_READY, timeout=deadline.ms())
        _run_all(page, deadline, timeout_error)
        problems = _problems(_save(page, root / name, deadline))
        _wait_rendered(page, deadline)
        (shots / "jupyterlab").mkdir(parents=True, exist_ok=True)
        _screenshot(page, shots / "jupyterlab" / name.replace(".ipynb", ".png"))
        assert not problems, f"{name} in JupyterLab:\n" + "\n".join(problems)
        if name in CHECKS:
            page.set_viewport_size({"width": WIDTH, "height": 1000})
            CHECKS[name](page, shots)
    finally:
        page.close()
        _api(base, f"/api/sessions/{session}", method="DELETE")
