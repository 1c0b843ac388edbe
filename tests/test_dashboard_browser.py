"""07_monitoring_dashboard in JupyterLab, in headless Chromium, as a student runs it: Run All,
the live image changes while the cells run, a playground slider moved by the keyboard
redraws the playground. Screenshots go under the test's tmp_path (printed at the end).

The JupyterLab fixture here is deliberately small; `tests/browser/conftest.py` (branch
nb-core) is the shared one to switch to once it is on main.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "dashboard-test"
NOTEBOOK = "07_monitoring_dashboard.ipynb"
LIVE_IMG = ".jp-OutputArea-output .widget-image"
PLAYGROUND = ".widget-vbox:has(.widget-slider:has-text('arrival rate (tasks/s)'))"

pytestmark = pytest.mark.browser

KERNEL_READY = """() => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const k = w && w.sessionContext && w.sessionContext.session
        && w.sessionContext.session.kernel;
    return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""
#: Every code cell has run ("[n]:"), or one failed (Run All stops there).
ALL_RUN = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
        .map(p => p.textContent);
    if (prompts.length === 0 || prompts.some(t => t.includes('*'))) return false;
    const failed = [...document.querySelectorAll('.jp-OutputArea-output')]
        .some(o => o.textContent.includes('Traceback'));
    return failed || prompts.every(t => /\\[\\d+\\]/.test(t));
}"""


def _need_browser() -> None:
    reason = None
    if not CHROMIUM.is_file():
        reason = f"no browser at {CHROMIUM}"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed"
    if reason is not None:
        if os.environ.get("CHATROOM_ASYNC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CHATROOM_ASYNC_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def lab_url(tmp_path: Path) -> Iterator[str]:
    """A JupyterLab server on a copy of notebooks/, its state under tmp_path."""
    _need_browser()
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    # Every cell stays in the page (JupyterLab 4 otherwise hides cells scrolled out of view,
    # and the live image of an early cell with them while Run All goes on below).
    tracker = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "jcfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jrt"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               PYTHONPATH=str(ROOT))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
         "--LabApp.expose_app_in_browser=True",  # KERNEL_READY reads window.jupyterapp
         "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={TOKEN}",
         f"--ServerApp.root_dir={root}", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # the server's readiness: its status endpoint answers
            assert server.poll() is None, f"jupyter lab exited: see {tmp_path / 'lab.log'}"
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "jupyter lab did not answer in 60 s"
                time.sleep(0.25)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _src_changes(page: Any, selector: str, times: int, timeout_ms: int) -> list[str]:
    """Wait until the image's src has changed `times` times; return the srcs seen."""
    seen = [page.locator(selector).first.get_attribute("src")]
    for _ in range(times):
        page.wait_for_function(
            "([sel, prev]) => { const i = document.querySelector(sel);"
            " return i !== null && i.src !== prev; }",
            arg=[selector, seen[-1]], timeout=timeout_ms)
        seen.append(page.locator(selector).first.get_attribute("src"))
    return seen


def test_notebook_07_live_in_jupyterlab(lab_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        try:
            _run(page, lab_url, shots)
        except Exception:
            page.screenshot(path=str(shots / "failure.png"))
            raise
        finally:
            browser.close()
    print(f"screenshots in {shots}")


def _run(page: Any, lab_url: str, shots: Path) -> None:
    """Run All, watch the live image change twice, move a playground slider."""
    from playwright.sync_api import expect

    page.goto(f"{lab_url}/lab/tree/{NOTEBOOK}?token={TOKEN}&reset")
    page.wait_for_function(KERNEL_READY, timeout=90_000)  # else Run All asks for a kernel
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    page.locator(LIVE_IMG).first.wait_for(state="attached", timeout=90_000)
    page.locator(LIVE_IMG).first.scroll_into_view_if_needed()
    live = _src_changes(page, LIVE_IMG, times=2, timeout_ms=30_000)
    assert len(set(live)) == 3
    page.screenshot(path=str(shots / "1_live.png"))
    output = page.locator(".jp-OutputArea-output")
    page.wait_for_function(ALL_RUN, timeout=180_000)
    playground = page.locator(PLAYGROUND).last
    img = f"{PLAYGROUND} .widget-image"
    expect(page.locator(img)).to_have_count(1, timeout=60_000)
    page.locator(img).scroll_into_view_if_needed()
    expect(page.locator(img)).to_be_visible()
    page.screenshot(path=str(shots / "2_playground_before.png"))
    before = page.locator(img).get_attribute("src")
    handle = playground.locator(".widget-slider:has-text('arrival rate (tasks/s)') "
                                ".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")
    page.wait_for_function("([i, prev]) => i.src !== prev",
                           arg=[page.locator(img).element_handle(), before], timeout=60_000)
    expect(page.locator(".widget-html").filter(has_text="done in")).to_have_count(
        1, timeout=60_000)
    rate = playground.locator(".widget-slider:has-text('arrival rate (tasks/s)') .widget-readout")
    expect(rate).to_have_text("4.25")  # 4.0, the notebook's last run, one step up
    page.screenshot(path=str(shots / "3_playground_after_slider.png"))
    expect(output.filter(has_text="Traceback")).to_have_count(0)
