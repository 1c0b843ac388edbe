"""Wrong on purpose: a plausible handler that awaits every client's send inside the loop
that reads the backend, so one slow client holds the worker."""

from __future__ import annotations

import asyncio
import math
from contextlib import aclosing
from typing import Any

from chatroom_async.grading import Frame


class StreamingResponseHandler:
    def __init__(self, min_interval_s: float = 0.05) -> None:
        self.min_interval_s = min_interval_s
        self.history: dict[str, list[Frame]] = {}
        self.clients: dict[str, list[Any]] = {}
        self.attempts: dict[str, int] = {}

    async def attach(self, task_id: str, client: Any, last_seq: int = 0) -> None:
        self.detach(task_id, client)
        history = self.history.setdefault(task_id, [])
        while history and history[-1].seq > last_seq:  # catch up, then listen
            for frame in [f for f in history if f.seq > last_seq]:
                await client.send(frame)
                last_seq = frame.seq
        self.clients.setdefault(task_id, []).append(client)

    def detach(self, task_id: str, client: Any) -> None:
        if client in self.clients.get(task_id, []):
            self.clients[task_id].remove(client)

    async def _emit(self, task_id: str, kind: str, text: str = "", error: str | None = None
                    ) -> None:
        history = self.history.setdefault(task_id, [])
        frame = Frame(task_id, history[-1].seq + 1 if history else 1, kind, text, error)
        history.append(frame)
        for client in list(self.clients.get(task_id, [])):
            try:
                await client.send(frame)
            except Exception:  # noqa: BLE001
                self.detach(task_id, client)

    async def handle_streaming_response(self, task_id: str, response_stream: Any) -> Any:
        if self.attempts.get(task_id):
            await self._emit(task_id, "retry")
        self.attempts[task_id] = self.attempts.get(task_id, 0) + 1
        loop = asyncio.get_running_loop()
        text, buffer, last, final = "", "", -math.inf, None
        try:
            async with aclosing(response_stream) as chunks:
                async for chunk in chunks:
                    final = dict(chunk.result) if chunk.result is not None else final
                    text, buffer = text + chunk.text, buffer + chunk.text
                    if buffer and loop.time() - last >= self.min_interval_s:
                        await self._emit(task_id, "delta", buffer)
                        buffer, last = "", loop.time()
            if buffer:
                await self._emit(task_id, "delta", buffer)
        except asyncio.CancelledError:
            await self._emit(task_id, "delta", buffer) if buffer else None
            await self._emit(task_id, "cancelled", text, "CancelledError: cancelled")
            raise
        except Exception as exc:
            await self._emit(task_id, "delta", buffer) if buffer else None
            await self._emit(task_id, "error", text, f"{type(exc).__name__}: {exc}")
            raise
        await self._emit(task_id, "done")
        return final

    async def aclose(self) -> None:
        pass
