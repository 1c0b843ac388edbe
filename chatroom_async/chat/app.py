"""The chat room's web server: one HTML page and one WebSocket endpoint, on the public API.

This is the reference integration a chat-room project copies. Each WebSocket belongs to one
user; a message becomes a task (`submit_task`), and the task's events (`follow`) go back to
that socket only: "处理中..." at once, the reply chunk by chunk, then the final reply or the
error. After a reload or a dropped connection the page follows its tasks again from the
last cursor it saw. Every read, follow and cancel passes the socket's user, so one user
can never see or stop another's task. Bad frames get an error frame and cost little.

Protocol (JSON text frames; `docs/chat-room.md` has the details):
    client: {"action": "send", "text": "...", "ref": "c1"}
            {"action": "follow", "task_id": "...", "after": 12}
            {"action": "cancel", "task_id": "..."}
    server: {"kind": "hello", "user": "alice"}
            {"kind": "accepted", "ref": "c1", "task_id": "..."}
            {"kind": "event", "event": {cursor, type, task_id, attempt, ts, origin, task}}
            {"kind": "error", "code": "...", "message": "...", ...}
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from chatroom_async import AsyncAIProcessor, ChatroomAsyncError, TaskAccessError, TaskNotFoundError

log = logging.getLogger("chatroom_async.chat")

MAX_FRAME = 8_192  # bytes of one client frame
MAX_TEXT = 2_000  # characters of one chat message
MAX_FOLLOWS = 8  # tasks one socket follows at once
RATE, BURST = 5.0, 10.0  # frames per second a socket may send, and the burst above that
USER = re.compile(r"[^\x00-\x1f\x7f]{1,32}")


def create_app(make_processor: Any) -> FastAPI:
    """The chat room as an ASGI app.

    Args:
        make_processor: a callable returning a (not yet started) `AsyncAIProcessor`; the
            app starts it when it starts and stops it when it stops.
    """
    processor: AsyncAIProcessor = make_processor()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with processor:
            yield

    app = FastAPI(title="chatroom_async chat room", lifespan=lifespan)
    page = resources.files("chatroom_async.chat").joinpath("page.html").read_text("utf-8")

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.websocket("/ws")
    async def chat(ws: WebSocket, user: str = "") -> None:
        if not USER.fullmatch(user) or not user.strip():
            await ws.close(code=1008, reason="?user= must be 1-32 printable characters")
            return
        await ws.accept()
        await Session(ws, processor, user).run()

    return app


class Session:
    """One user's WebSocket: reads frames, runs their actions, writes frames in order."""

    def __init__(self, ws: WebSocket, processor: AsyncAIProcessor, user: str) -> None:
        self.ws, self.processor, self.user = ws, processor, user
        self.out: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.follows: dict[str, asyncio.Task[None]] = {}
        self.tokens, self.stamp = BURST, time.monotonic()

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        await self.out.put({"kind": "hello", "user": self.user})
        try:
            while (message := await self.ws.receive())["type"] != "websocket.disconnect":
                if message.get("text") is None:
                    await self._error("bad_json", "frames must be text (JSON)")
                else:
                    await self._handle(message["text"])
        except WebSocketDisconnect:
            pass
        finally:
            for task in [*self.follows.values(), writer]:
                task.cancel()
            await asyncio.gather(*self.follows.values(), writer, return_exceptions=True)

    async def _write(self) -> None:
        while True:
            await self.ws.send_text(json.dumps(await self.out.get(), ensure_ascii=False))

    async def _error(self, code: str, message: str, **extra: Any) -> None:
        await self.out.put({"kind": "error", "code": code, "message": message, **extra})

    async def _handle(self, frame: str) -> None:
        """One client frame: checked for size, rate and shape before anything runs."""
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.stamp) * RATE)
        self.stamp = now
        if self.tokens < 1:
            return await self._error("rate_limited", f"more than {RATE:g} messages a second")
        self.tokens -= 1
        if len(frame.encode()) > MAX_FRAME:
            return await self._error("too_large", f"a frame is at most {MAX_FRAME} bytes")
        try:
            msg = json.loads(frame)
        except ValueError:
            return await self._error("bad_json", "a frame must be a JSON object")
        if not isinstance(msg, dict):
            return await self._error("bad_json", "a frame must be a JSON object")
        action = {"send": self._send, "follow": self._follow, "cancel": self._cancel}.get(
            msg.get("action"))  # type: ignore[arg-type]
        if action is None:
            return await self._error("unknown_action", "action must be send, follow or cancel")
        try:
            await action(msg)
        except TaskAccessError:
            await self._error("not_yours", "that task belongs to another user",
                              task_id=msg.get("task_id"))
        except TaskNotFoundError:
            await self._error("not_found", "no such task (or it expired)",
                              task_id=msg.get("task_id"))
        except (ChatroomAsyncError, ValueError, TypeError) as exc:
            await self._error("invalid", str(exc)[:200], ref=msg.get("ref"))
        except Exception:  # Redis down, a bug: this frame fails, the socket goes on
            log.exception("chat: %s failed for %s", msg.get("action"), self.user)
            await self._error("server_error", "the server could not do that now; try again")

    async def _send(self, msg: dict[str, Any]) -> None:
        text = msg.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise ValueError(f"text must be 1-{MAX_TEXT} characters")
        if len(self.follows) >= MAX_FOLLOWS:
            raise ValueError(f"at most {MAX_FOLLOWS} replies stream at once")
        task_id = await self.processor.submit_task(self.user, "chat_completion",
                                                   {"message": text})
        await self.out.put({"kind": "accepted", "ref": msg.get("ref"), "task_id": task_id})
        self._start_follow(task_id, 0)

    async def _follow(self, msg: dict[str, Any]) -> None:
        task_id, after = msg.get("task_id"), msg.get("after", 0)
        if not isinstance(task_id, str) or not isinstance(after, int) or after < 0:
            raise ValueError("follow needs a task_id and a cursor after >= 0")
        if await self.processor.get_task_status(task_id, user_id=self.user) is None:  # and
            raise TaskNotFoundError(task_id)  # refuses another user's task with TaskAccessError
        self._start_follow(task_id, after)

    async def _cancel(self, msg: dict[str, Any]) -> None:
        task_id = msg.get("task_id")
        if not isinstance(task_id, str):
            raise ValueError("cancel needs a task_id")
        if not await self.processor.cancel_task(task_id, user_id=self.user):
            await self._error("finished", "the task had already finished", task_id=task_id)

    def _start_follow(self, task_id: str, after: int) -> None:
        old = self.follows.pop(task_id, None)
        if old is not None:
            old.cancel()  # a second follow of one task replaces the first
        if len(self.follows) >= MAX_FOLLOWS:
            raise ValueError(f"at most {MAX_FOLLOWS} replies stream at once")
        self.follows[task_id] = asyncio.create_task(self._relay(task_id, after))

    async def _relay(self, task_id: str, after: int) -> None:
        """The task's events to this socket, until its end."""
        try:
            async with aclosing(self.processor.follow(task_id, after=after,
                                                      user_id=self.user)) as events:
                async for event in events:
                    await self.out.put({"kind": "event", "event": event.to_dict()})
        except (ChatroomAsyncError, ValueError) as exc:
            await self._error("follow_failed", str(exc)[:200], task_id=task_id)
        finally:
            if self.follows.get(task_id) is asyncio.current_task():
                del self.follows[task_id]
