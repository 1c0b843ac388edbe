"""JupyterLab in headless Chromium, for tests that look at the notebooks as a student does.

`jupyter_lab` starts a JupyterLab server on a free port with a token, on a copy of
`notebooks/` (a run in the browser saves outputs: the repository's notebooks stay
untouched), with its config, runtime, settings and workspace folders under the test's
`tmp_path`, and stops it afterwards. `lab_page` is a playwright page in Debian's
`/usr/bin/chromium` (playwright cannot download its own browser here). Without chromium
or playwright the tests skip with the reason, unless CHATROOM_ASYNC_REQUIRE_BROWSER=1 (CI),
which makes that a failure. Screenshots go under the test's `tmp_path`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHATROOM_ASYNC_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = os.environ.get("CHATROOM_ASYNC_REQUIRE_BROWSER") == "1"
START_TIMEOUT_S = 60.0


def need_browser() -> None:
    """Skip (or fail, under CHATROOM_ASYNC_REQUIRE_BROWSER=1) without chromium/playwright."""
    reason = None
    if not CHROMIUM.is_file():
        reason = f"no browser at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None:
        return
    if REQUIRE_BROWSER:
        pytest.fail(f"CHATROOM_ASYNC_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@dataclass
class Lab:
    """A running JupyterLab server."""

    base_url: str
    token: str
    root_dir: Path
    log_path: Path
    process: subprocess.Popen[str]

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path}{sep}token={self.token}"

    def notebook_url(self, name: str) -> str:
        """The URL that opens `name` (relative to the root) in a fresh workspace."""
        return self.url(f"lab/tree/{name}?reset")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lab_env(base: Path) -> dict[str, str]:
    """Environment with every per-user Jupyter folder under `base`, and no news toast."""
    settings = base / "lab-settings"
    (settings / "@jupyterlab/apputils-extension").mkdir(parents=True, exist_ok=True)
    # The "get notified about official Jupyter news?" toast covers part of every screenshot.
    (settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8")
    # Render every cell (JupyterLab 4 renders only those near the viewport by default), so a
    # test sees every prompt and output.
    (settings / "@jupyterlab/notebook-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}), encoding="utf-8")
    dirs = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime", "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
            "IPYTHONDIR": "ipython"}
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings))
    for name, sub in dirs.items():
        (base / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(base / sub)
    return env


def start_lab(command: list[str], *, base: Path, root_dir: Path, cwd: Path = ROOT) -> Lab:
    """Start `command` (a `jupyter lab` command line without port/token/root options) and
    return once the server says it is running. The log is written to `base/lab.log`."""
    port, token = free_port(), "chatroom-async-test-token"
    args = [*command, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
            "--ServerApp.port_retries=0"]
    if os.geteuid() == 0 and "--allow-root" not in args and command[0] != "bash":
        args.append("--allow-root")
    log_path = base / "lab.log"
    proc = subprocess.Popen(args, cwd=cwd, env=lab_env(base), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, encoding="utf-8")
    ready = threading.Event()
    banner: list[str] = []
    base_url = f"http://127.0.0.1:{port}"

    def pump() -> None:  # copy the log; wake the caller at the banner, or at the exit
        assert proc.stdout is not None
        with log_path.open("w", encoding="utf-8") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if not banner and f"{base_url}/" in line:
                    banner.append(line)
                    ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    lab = Lab(base_url, token, root_dir, log_path, proc)
    try:
        if not ready.wait(START_TIMEOUT_S) or not banner:
            raise RuntimeError("JupyterLab did not start; its log:\n"
                               + log_path.read_text("utf-8"))
        wait_listening(port)
        # Served by the loop, so only after start-up wrote the runtime files (which it
        # does just after the banner): tests may read them from here on.
        with urllib.request.urlopen(lab.url("api/status"), timeout=START_TIMEOUT_S) as reply:
            assert reply.status == 200
    except BaseException:
        stop_lab(lab)  # never leave a server behind
        raise
    return lab


def wait_listening(port: int, timeout_s: float = 10.0) -> None:
    """Return once 127.0.0.1:`port` accepts a connection.

    jupyter_server logs its banner and then binds its port in the first turn of its
    event loop, so a connection right after the banner can be refused. Another process's
    listen() sends us no event: this retries every 20 ms, up to `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def stop_lab(lab: Lab) -> None:
    """Stop the server (SIGTERM: it shuts its kernels down), killing it if it hangs."""
    if lab.process.poll() is None:
        lab.process.terminate()
        try:
            lab.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.process.kill()
            lab.process.wait(timeout=10)
    if lab.process.stdout is not None:
        lab.process.stdout.close()


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on a copy of `notebooks/` (root `tmp_path/work`), stopped at teardown."""
    need_browser()
    work = tmp_path / "work"
    shutil.copytree(ROOT / "notebooks", work / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    jupyter = Path(sys.executable).with_name("jupyter")
    # expose_app_in_browser: tests read the kernel's state from window.jupyterapp
    lab = start_lab([str(jupyter), "lab", "--LabApp.expose_app_in_browser=True"],
                    base=tmp_path / "jupyter", root_dir=work)
    yield lab
    stop_lab(lab)


@pytest.fixture
def lab_page(tmp_path: Path) -> Iterator[Any]:
    """A playwright page (1400x1000) in headless /usr/bin/chromium."""
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield page
        finally:
            browser.close()


def open_notebook(page: Any, lab: Lab, name: str) -> None:
    """Open `name` and wait until its kernel is connected and idle (Run All before that
    pops a "Select Kernel" dialog instead of running)."""
    page.goto(lab.notebook_url(name))
    page.wait_for_function(
        """() => {
            const app = window.jupyterapp;
            const widget = app && app.shell.currentWidget;
            const kernel = widget && widget.sessionContext && widget.sessionContext.session
                && widget.sessionContext.session.kernel;
            return !!kernel && kernel.connectionStatus === 'connected'
                && kernel.status === 'idle';
        }""", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")


TRACEBACK = "Traceback (most recent call last)"


def run_all_cells(page: Any, timeout_s: float = 120.0) -> None:
    """Run > Run All Cells, then wait until every code cell ran, or one failed."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    # A code cell's prompt reads "[*]:" while queued or running, "[n]:" once run and "[ ]:"
    # if never run (Run All skips the cells after an error).
    page.wait_for_function(
        """(traceback) => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                .map(p => p.textContent);
            if (prompts.length === 0 || prompts.some(t => t.includes('*'))) return false;
            const failed = [...document.querySelectorAll('.jp-OutputArea-output')]
                .some(o => o.textContent.includes(traceback));
            return failed || prompts.every(t => /\\[\\d+\\]/.test(t));
        }""", arg=TRACEBACK, timeout=timeout_s * 1000)


def cell_errors(page: Any) -> list[str]:
    """The text of every output that shows a Python traceback."""
    texts: list[str] = page.locator(".jp-OutputArea-output").all_inner_texts()
    return [t for t in texts if TRACEBACK in t]


def unrun_cells(page: Any) -> int:
    """How many code cells have no execution number."""
    prompts: list[str] = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    return sum(1 for t in prompts if not any(ch.isdigit() for ch in t))
