"""sim-server: the simulated LLM API (`SimulatedAIBackend`) served over HTTP as an
OpenAI-compatible `POST /v1/chat/completions`, JSON or `stream=true` SSE, on loopback.

It owns the HTTP side only: auth, a connection per call, the moment the client goes (the
call is cancelled at once, as a provider stops generating), and a record of every call for
tests and teaching. What an answer says and how it fails stays the simulator's; what goes
on the wire is `sim_wire`. Runs inside a program (`async with SimServer(...)`) or as
`chatroom-async sim-server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatroom_async.simulated import SimulatedAIBackend

from .sim_chat import CallRecord, ChatEndpoint
from .sim_wire import WireError, error_body

__all__ = ["LOOPBACK", "CallRecord", "SimServer"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_CUT_LOG = "ASGI callable returned without completing response."


class _CutFilter(logging.Filter):
    """Hides uvicorn's complaint about the answers sim-server cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT_LOG


class _HostedServer(uvicorn.Server):
    """uvicorn inside a host program: the host owns the signal handlers."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class SimServer:
    """An OpenAI-compatible HTTP face for a `SimulatedAIBackend`.

    Args:
        backend: the simulator answering (default: the realistic profile, seed 0). Its
            settings can be changed while serving (`server.backend.update(...)`).
        api_key: if set, calls without `Authorization: Bearer <api_key>` get a 401.
        history: how many `CallRecord`s to keep.
    """

    def __init__(self, backend: SimulatedAIBackend | None = None, *,
                 api_key: str | None = None, history: int = 10_000) -> None:
        self.backend = backend if backend is not None else SimulatedAIBackend()
        self.api_key = api_key
        self.records: deque[CallRecord] = deque(maxlen=history)
        self.counts: Counter[str] = Counter()
        self.host, self.port = "127.0.0.1", 0
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", ChatEndpoint(self), methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/sim/stats", self._stats, methods=["GET"])])
        self._numbers = itertools.count(1)
        self._work: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Condition | None = None
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._filter = _CutFilter()

    @property
    def base_url(self) -> str:
        """The URL an OpenAI client takes as `base_url`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        """The server's counters and the simulator's (`SimStats`) as one JSON-ready dict."""
        return {"server": dict(self.counts), "backend": dataclasses.asdict(self.backend.stats())}

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds; it is checked each time a call starts (once the
        simulator has admitted it) or ends.

        Raises:
            TimeoutError: not within `timeout` seconds.
        """
        async with asyncio.timeout(timeout), self._condition():
            await self._condition().wait_for(predicate)

    # -- running --------------------------------------------------------------------------
    def bind(self, host: str = "127.0.0.1", port: int = 0) -> socket.socket:
        """A listening socket on loopback (`port=0`: a free port); sets `port`.

        Raises:
            ValueError: `host` is not a loopback address.
        """
        if host not in LOOPBACK:
            raise ValueError(f"sim-server listens on loopback only ({', '.join(LOOPBACK)}), "
                             f"not {host!r}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        self.host, self.port = host, sock.getsockname()[1]
        return sock

    def uvicorn_server(self, *, log_level: str = "warning",
                       configure_logging: bool = False) -> uvicorn.Server:
        """The uvicorn server for `app`. It never installs signal handlers (the host program
        owns them: set `should_exit` to stop it); `configure_logging` applies uvicorn's own
        log format and access log, as a command does."""
        options: dict[str, Any] = {} if configure_logging else {"log_config": None,
                                                                "access_log": False}
        config = uvicorn.Config(self.app, http="h11", ws="none", lifespan="off",
                                log_level=log_level, timeout_graceful_shutdown=2, **options)
        logging.getLogger("uvicorn.error").addFilter(self._filter)
        return _HostedServer(config)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in the background on this event loop; returns `base_url` at once (the
        socket already listens, so a client may connect straight away)."""
        if self._serving is not None:
            raise RuntimeError("this SimServer is already serving")
        sock = self.bind(host, port)
        self._server = self.uvicorn_server()
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        return self.base_url

    def cancel_calls(self) -> None:
        """End the calls in progress now: each gets a 503 "shutting down" (or is cut, if its
        answer had begun), as when a provider restarts."""
        for task in list(self._work):
            task.cancel()

    async def stop(self) -> None:
        """Cancel the calls in progress, stop serving and close the socket."""
        self.cancel_calls()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            try:
                await self._serving
            finally:
                self._server = self._serving = None
                logging.getLogger("uvicorn.error").removeFilter(self._filter)

    async def __aenter__(self) -> Self:
        await self.start(self.host, self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- endpoints ------------------------------------------------------------------------
    def authorized(self, authorization: str | None) -> bool:
        return self.api_key is None or authorization == f"Bearer {self.api_key}"

    def auth_error(self) -> WireError:
        return WireError(401, error_body(
            401, "Incorrect API key provided. Check the key you pass as the Bearer token.",
            "invalid_api_key"))

    async def _models(self, request: Request) -> JSONResponse:
        if not self.authorized(request.headers.get("authorization")):
            error = self.auth_error()
            return JSONResponse(error.body, status_code=error.status)
        model = self.backend.settings.model
        return JSONResponse({"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "chatroom-async"}]})

    async def _stats(self, request: Request) -> JSONResponse:
        return JSONResponse(self.stats())

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def note(self, record: CallRecord | None = None) -> None:
        """Count a finished call (if any) and wake `wait_for`."""
        if record is not None:
            record.ended = self.backend.clock.now()
            self.counts[record.outcome] += 1
            if record.status is not None:
                self.counts[f"status_{record.status}"] += 1
        async with self._condition():
            self._condition().notify_all()

    def next_number(self) -> int:
        return next(self._numbers)

    @contextlib.contextmanager
    def tracking(self, task: asyncio.Task[None]) -> Iterator[None]:
        self._work.add(task)
        try:
            yield
        finally:
            self._work.discard(task)
