"""One chat call at sim-server, as raw ASGI: read the body, answer as JSON or as an SSE
stream, and race the answer against the client's departure, so that a client that closes
its connection cancels the simulated call at once (the slot is freed, the call counted as
cancelled), as a real provider stops generating.

A stream that the simulator breaks is cut on the wire: the connection closes without the
end of the chunked body, which a client sees as "peer closed connection".
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from chatroom_async import AIError, ServerError, StreamInterruptedError
from chatroom_async.simulated import SimStream

from .sim_wire import (
    ChatCall,
    WireError,
    ai_error,
    call_ids,
    chunk_event,
    completion_body,
    error_body,
    limit_headers,
    parse_chat,
    sse,
)

if TYPE_CHECKING:
    from .sim_server import SimServer

MAX_BODY_BYTES = 4 * 1024 * 1024
Headers = list[tuple[str, str]]


@dataclass(slots=True)
class CallRecord:
    """One chat call as the server saw it (times on the backend's clock).

    Attributes:
        outcome: "running", then "ok", "error" (an HTTP error answer), "cut" (the
            connection dropped mid-answer on purpose: a broken stream), "disconnected"
            (the client went first; the simulated call was cancelled) or "stopped" (the
            server stopped during the call).
        chunks: stream chunks sent.
    """

    number: int
    task_id: str
    attempt: int
    stream: bool
    started: float
    ended: float | None = None
    status: int | None = None
    outcome: str = "running"
    chunks: int = 0


class ChatEndpoint:
    """`POST /v1/chat/completions` for one `SimServer`."""

    def __init__(self, server: SimServer) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = self.server
        number = server.next_number()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        task_id, attempt = call_ids(headers, number)
        record = CallRecord(number, task_id, attempt, False, server.backend.clock.now())
        server.records.append(record)
        extra = limit_headers(server.backend.settings) + [("x-request-id", f"req-{number}")]
        try:
            raw = await _read_body(receive)
            if raw is None:
                record.outcome = "disconnected"
            elif not server.authorized(headers.get("authorization")):
                await self._refuse(send, record, server.auth_error(), extra)
            else:
                call = parse_chat(raw, headers, server.backend.settings.model, number)
                record.stream = call.stream
                await self._serve(call, record, receive, send, extra)
        except WireError as exc:
            await self._refuse(send, record, exc, extra)
        finally:
            await server.note(record)

    async def _serve(self, call: ChatCall, record: CallRecord, receive: Receive, send: Send,
                     extra: Headers) -> None:
        """Answer while watching for the client's departure; whichever comes first wins."""
        answer = _Answer(self.server, call, record, send, extra)
        work = asyncio.create_task(answer.run())
        gone = asyncio.create_task(_disconnected(receive))
        with self.server.tracking(work):
            try:
                await asyncio.sleep(0)  # the call's first step (its admission) runs first
                await self.server.note()  # then waiters hear that it started
                await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                if not work.done():
                    work.cancel()
                    record.outcome = "disconnected"
                await asyncio.gather(work, gone, return_exceptions=True)
        if work.cancelled() and record.outcome == "running":  # the server is stopping
            record.outcome = "stopped"
            if record.status is None:  # nothing sent yet: say so, as a provider would
                record.status = 503
                await send_json(send, 503, error_body(503, "sim-server is shutting down",
                                                      "1305"), extra)
        elif not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]

    async def _refuse(self, send: Send, record: CallRecord, error: WireError,
                      extra: Headers) -> None:
        record.status, record.outcome = error.status, "error"
        await send_json(send, error.status, error.body, extra + list(error.headers))


class _Answer:
    """The answer to one parsed call: JSON or SSE, an error status, or a cut."""

    def __init__(self, server: SimServer, call: ChatCall, record: CallRecord, send: Send,
                 extra: Headers) -> None:
        self.server, self.call, self.record, self.send = server, call, record, send
        self.extra = extra

    async def run(self) -> None:
        if self.call.stream:
            await self._stream()
        else:
            await self._json()

    async def _fail(self, exc: AIError) -> None:
        error = ai_error(exc, self.server.backend.settings)
        self.record.status, self.record.outcome = error.status, "error"
        await send_json(self.send, error.status, error.body, self.extra + list(error.headers))

    async def _json(self) -> None:
        backend, record = self.server.backend, self.record
        try:
            result = await backend.complete(self.call.request)
        except ServerError as exc:
            if exc.code != "1234":  # 1234: the simulator broke the connection mid-answer
                await self._fail(exc)
                return
            record.status, record.outcome = 200, "cut"
            await self.send({"type": "http.response.start", "status": 200,
                             "headers": _encode([("content-type", "application/json"),
                                                 ("content-length", "4096"), *self.extra])})
            await self.send({"type": "http.response.body", "body": b'{"id": "chatcmpl-',
                             "more_body": True})
            return  # the rest never comes: uvicorn closes the connection
        except AIError as exc:
            await self._fail(exc)
            return
        body = completion_body(self.call, result, record.number)
        record.status, record.outcome = 200, "ok"
        await send_json(self.send, 200, body, self.extra)

    async def _stream(self) -> None:
        stream: SimStream = self.server.backend.stream(self.call.request)
        async with stream:
            try:
                chunk = await anext(stream)  # admission and the time to first token
            except StreamInterruptedError:
                await self._start_events()
                self.record.outcome = "cut"  # broke before its first token: cut at once
                return
            except AIError as exc:
                await self._fail(exc)
                return
            await self._start_events()
            first = True
            while True:
                await self._body(chunk_event(self.call, self.record.number, chunk.text,
                                             first=first, finish_reason=chunk.finish_reason))
                self.record.chunks, first = self.record.chunks + 1, False
                if chunk.finish_reason is not None:
                    break
                try:
                    chunk = await anext(stream)
                except AIError:  # a broken stream: cut the connection, keep what was sent
                    self.record.outcome = "cut"
                    return
        if self.call.include_usage and chunk.usage is not None:
            await self._body(chunk_event(self.call, self.record.number, "", usage=chunk.usage))
        self.record.outcome = "ok"
        await self.send({"type": "http.response.body", "body": sse("[DONE]"),
                         "more_body": False})

    async def _start_events(self) -> None:
        self.record.status = 200
        await self.send({"type": "http.response.start", "status": 200, "headers": _encode(
            [("content-type", "text/event-stream; charset=utf-8"),
             ("cache-control", "no-cache"), *self.extra])})

    async def _body(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})


async def send_json(send: Send, status: int, body: dict[str, Any], headers: Headers) -> None:
    """A complete JSON response."""
    data = json.dumps(body, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status, "headers": _encode(
        [("content-type", "application/json"), ("content-length", str(len(data))), *headers])})
    await send({"type": "http.response.body", "body": data, "more_body": False})


def _encode(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None if the client left first.

    Raises:
        WireError: 413 past MAX_BODY_BYTES.
    """
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        part = message.get("body", b"")
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise WireError(413, error_body(413, f"the body exceeds {MAX_BODY_BYTES} bytes",
                                            "1210"))
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (or the exchange is over)."""
    while (await receive())["type"] != "http.disconnect":
        pass
