"""Processes for the chat room's tests: `chatroom-async serve` web processes and chat worker
processes, started for a test and stopped after it; and a WebSocket client that sorts the
frames it receives."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets

from tests.browser.conftest import free_port

START_S = 60.0


class Proc:
    """A child process; `stop()` sends SIGTERM (then SIGKILL) and waits."""

    def __init__(self, process: asyncio.subprocess.Process, port: int | None = None) -> None:
        self.process, self.port = process, port
        self.output: list[bytes] = []
        self._drain: asyncio.Task[None] | None = None

    def keep_reading(self, stream: asyncio.StreamReader) -> None:
        """Read the rest of its output (a full pipe would stop it), for a failure's report."""
        async def drain() -> None:
            while line := await stream.readline():
                self.output.append(line)
        self._drain = asyncio.create_task(drain())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, user: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?user={user}"

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drain is not None:
            await self._drain


async def _read_until(stream: asyncio.StreamReader, marker: bytes) -> None:
    async with asyncio.timeout(START_S):
        while marker not in (line := await stream.readline()):
            if not line:
                raise RuntimeError(f"the process ended before saying {marker!r}")


class Procs:
    """Starts `chatroom-async serve` web processes and chat worker processes."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    async def web(self, redis_url: str | None, namespace: str, workers: int = 0,
                  extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Proc:
        port = free_port()
        args = ["--port", str(port), "--workers", str(workers), "--namespace", namespace,
                *extra]
        if redis_url:
            args += ["--redis-url", redis_url]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chatroom_async", "serve", *args, env=env,
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
        self.started.append(proc := Proc(process, port))
        assert process.stderr is not None
        await _read_until(process.stderr, b"Uvicorn running on")
        proc.keep_reading(process.stderr)
        return proc

    async def worker(self, redis_url: str, namespace: str) -> Proc:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.streaming", "chat-worker", redis_url, namespace,
            stdout=asyncio.subprocess.PIPE)
        self.started.append(proc := Proc(process))
        assert process.stdout is not None
        await _read_until(process.stdout, b"ready")
        proc.keep_reading(process.stdout)
        return proc


@pytest.fixture
async def procs() -> AsyncIterator[Procs]:
    """Processes that are stopped at the end of the test."""
    made = Procs()
    yield made
    await asyncio.gather(*(p.stop() for p in made.started))


class ChatClient:
    """One user's socket: frames sorted by kind; `changed` is set on every frame."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> ChatClient:
        return cls(await websockets.connect(url, max_size=2**20))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self.changed.set()
        except websockets.ConnectionClosed:
            pass
        self.changed.set()

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        async with asyncio.timeout(timeout):
            while not (found := predicate()):
                self.changed.clear()
                if (found := predicate()):
                    break
                await self.changed.wait()
        return found

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["kind"] == kind]

    def events(self, task_id: str | None = None) -> list[dict[str, Any]]:
        return [f["event"] for f in self.of("event")
                if task_id is None or f["event"]["task_id"] == task_id]

    def ended(self, task_id: str) -> dict[str, Any] | None:
        done = ("task_completed", "task_failed", "task_cancelled")
        return next((e for e in self.events(task_id) if e["type"] in done), None)

    async def chat(self, text: str, ref: str) -> str:
        """Send a message; return its task id once accepted."""
        await self.send(action="send", text=text, ref=ref)
        frame = await self.wait_for(lambda: next(
            (f for f in self.of("accepted") if f["ref"] == ref), None))
        return str(frame["task_id"])

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


def reply_text(events: list[dict[str, Any]]) -> str:
    """The text of the last attempt's progress events, in cursor order."""
    attempt = max((e["attempt"] for e in events), default=0)
    return "".join(e["task"]["progress"]["text"] for e in sorted(events, key=lambda e: e["cursor"])
                   if e["type"] == "task_progress" and e["attempt"] == attempt)
