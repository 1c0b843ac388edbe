"""Streaming backends the follow tests steer chunk by chunk, and the entry point of the
processes they start (`python -m tests.streaming worker|follow ...`)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from chatroom_async import AIRequest, AsyncAIProcessor, ProcessorSettings, ServerError, StreamChunk


class Talker:
    """Streams `words`, one per chunk. With `steps`, each chunk waits for a `release()`;
    `fail` maps an attempt (AIRequest.attempt) to how many chunks it sends before raising
    ServerError; `hang_after` makes every attempt stop for good after that many chunks."""

    def __init__(self, words: list[str], *, steps: bool = False, fail: dict[int, int] | None = None,
                 hang_after: int | None = None) -> None:
        self.words, self.steps, self.fail, self.hang_after = words, steps, fail or {}, hang_after
        self._permits = asyncio.Semaphore(0)
        self.sent = 0
        self.moved = asyncio.Event()

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        return {"response": "".join(self.words)}

    async def stream(self, request: AIRequest) -> AsyncIterator[StreamChunk]:
        last = len(self.words) - 1
        for i, word in enumerate(self.words):
            if self.hang_after is not None and i >= self.hang_after:
                await asyncio.Event().wait()
            if self.fail.get(request.attempt) == i:
                raise ServerError(f"broke after {i} chunks")
            if self.steps:
                await self._permits.acquire()
            self.sent += 1
            self.moved.set()
            yield StreamChunk(i, word, "stop" if i == last else None,
                              result={"response": "".join(self.words)} if i == last else None)


class Echo:
    """The chat tests' AI: replies "回复: " + the message, a character per chunk; a message
    that starts with "慢" comes at 20 characters a second (long enough to cancel or
    reconnect in the middle), any other at once."""

    @staticmethod
    def reply(message: str) -> str:
        return "回复: " + message * (8 if message.startswith("慢") else 1)

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        return {"response": self.reply(request.request_data["message"])}

    async def stream(self, request: AIRequest) -> AsyncIterator[StreamChunk]:
        message = request.request_data["message"]
        text = self.reply(message)
        for i, char in enumerate(text):
            if message.startswith("慢"):
                await asyncio.sleep(0.05)  # the simulated AI's pace, not a wait in a test
            last = i == len(text) - 1
            yield StreamChunk(i, char, "stop" if last else None,
                              result={"response": text} if last else None)


async def _chat_worker(url: str, namespace: str) -> None:
    async with AsyncAIProcessor(url, max_workers=8, backend=Echo(), namespace=namespace):
        print("ready", flush=True)
        await asyncio.Event().wait()


async def _worker(url: str, namespace: str, words: str, hang_after: int) -> None:
    """A worker whose streams stop after `hang_after` chunks (to be SIGKILLed)."""
    backend = Talker(list(words), hang_after=hang_after)
    settings = ProcessorSettings(lease_s=1.0)
    async with AsyncAIProcessor(url, max_workers=1, backend=backend, namespace=namespace,
                                settings=settings):
        print("ready", flush=True)
        await asyncio.Event().wait()


async def _follow(url: str, namespace: str, task_id: str, after: int, user: str) -> None:
    """Print each event of the task as a JSON line, until its end."""
    async with AsyncAIProcessor(url, max_workers=0, namespace=namespace) as p:
        async for event in p.follow(task_id, after=after, user_id=json.loads(user)):
            print(json.dumps(event.to_dict(), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    kind, url, ns, *rest = sys.argv[1:]
    if kind == "worker":
        asyncio.run(_worker(url, ns, rest[0], int(rest[1])))
    elif kind == "chat-worker":
        asyncio.run(_chat_worker(url, ns))
    else:
        asyncio.run(_follow(url, ns, rest[0], int(rest[1]), rest[2]))
