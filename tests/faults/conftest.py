"""A redis-server of the fault tests' own (they kill its clients, pause and restart it, so
they never touch the shared server), and a fleet of `chatroom-async worker` processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_REAL

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """redis-server on a free port, append-only (fsync always), so a restart keeps the data."""

    def __init__(self, exe: str, folder: Path) -> None:
        self.exe, self.folder, self.port = exe, folder, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder),
             "--protected-mode", "no", "--logfile", ""],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # blocks until the server says it is ready
            if "Ready to accept connections" in line:
                return
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def crash(self) -> None:
        """SIGKILL: no shutdown, no final save; what is in the AOF is what comes back."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    exe = shutil.which("redis-server")
    if exe is None:
        if REQUIRE_REAL:
            pytest.fail("CHATROOM_ASYNC_REQUIRE_REDIS=1 but there is no redis-server")
        pytest.skip("no redis-server on PATH")
    srv = RedisServer(exe, tmp_path_factory.mktemp("redis"))
    srv.start()
    yield srv
    srv.stop()


class Fleet:
    """`chatroom-async worker` processes on one namespace; each one's stderr goes to a file."""

    def __init__(self, url: str, namespace: str, folder: Path, sleep_s: float) -> None:
        self.url, self.namespace, self.folder = url, namespace, folder
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "FAULT_REDIS_URL": url,
                    "FAULT_RUNS_KEY": f"{namespace}-runs", "FAULT_SLEEP_S": str(sleep_s)}
        self.procs: list[asyncio.subprocess.Process] = []
        self.logs: list[Path] = []

    async def spawn(self, *, concurrency: int = 4, lease: float = 1.0,
                    drain: float = 10.0) -> asyncio.subprocess.Process:
        log = self.folder / f"worker-{len(self.procs)}.log"
        with log.open("w") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chatroom_async", "worker", "--redis-url", self.url,
                "--namespace", self.namespace, "--concurrency", str(concurrency),
                "--backend", "import:tests.faults.backend:make", "--lease", str(lease),
                "--drain", str(drain), env=self.env, cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=err)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int:
        if proc.returncode is None:
            proc.send_signal(sig)
        return await proc.wait()

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
