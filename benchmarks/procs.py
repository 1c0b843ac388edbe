"""Worker processes: spawn one (as a separate OS process), read its RSS, stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.settings import REPO_ROOT

STOP_GRACE_SECONDS = 3.0


@dataclass
class WorkerProcess:
    """A spawned worker and the file its stdout/stderr go to."""

    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    spawned_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        """Raise with the end of the worker's log if it has exited."""
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(
                f"worker exited with {code}: {' '.join(self.argv)}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def spawn_worker(argv: list[str]) -> WorkerProcess:
    """Start `argv` from the repository root with `benchmarks` importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    fd, log_name = tempfile.mkstemp(prefix="bench-worker-", suffix=".log")
    spawned_at = time.time()
    with os.fdopen(fd, "wb") as log:
        popen = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    return WorkerProcess(argv, popen, Path(log_name), spawned_at)


def stop_worker(worker: WorkerProcess, keep_log: bool = False) -> None:
    """SIGTERM, then SIGKILL after a short grace; wait until it is gone."""
    if worker.popen.poll() is None:
        worker.popen.send_signal(signal.SIGTERM)
        try:
            worker.popen.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            worker.popen.kill()
            worker.popen.wait()
    if not keep_log:
        worker.log_path.unlink(missing_ok=True)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _vm_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    """VmRSS (KiB) of `pid` plus all its descendants (a worker may fork children)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _vm_rss_kib(current)
        todo += _children(current)
    return total
