"""The AI backend plug point: what a worker calls to run one task.

A backend is any object with `async complete(request) -> dict`. One that can also stream
provides `stream(request)`, an async iterator of `StreamChunk`s whose last chunk carries the
finished result; the worker then publishes every chunk as a `task_progress` event. Errors
are raised as the `chatroom_async.errors.AIError` tree, so the worker knows what to retry.

`InstantBackend` answers at once, deterministically (the default and the tests' workhorse);
`FunctionBackend` wraps a plain coroutine function, the way httpx's MockTransport wraps a
handler. The realistic one is `chatroom_async.simulated.SimulatedAIBackend`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class AIRequest:
    """One attempt at one task, as the backend sees it.

    Attributes:
        task_id: the task's id; with `attempt` it seeds a simulated outcome.
        attempt: 1 for the first attempt, 2 for the next (a retry, rate-limited or not),
            and so on.
        user_id: who asked.
        request_type: "chat_completion", "content_summary" or "translation".
        request_data: the validated request fields (read-only by convention).
    """

    task_id: str
    attempt: int
    user_id: int | str
    request_type: str
    request_data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed answer.

    Attributes:
        index: 0-based position of this chunk in the stream.
        text: the new text (one or two tokens).
        finish_reason: set on the last chunk ("stop", "length", ...).
        usage: token usage, on the last chunk.
        result: the complete result dict, on the last chunk.
    """

    index: int
    text: str
    finish_reason: str | None = None
    usage: Mapping[str, int] | None = None
    result: Mapping[str, Any] | None = field(default=None)


@runtime_checkable
class AIBackend(Protocol):
    """What a worker needs from an AI service."""

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        """Run the request and return its result, or raise an AIError."""
        ...


@runtime_checkable
class StreamingAIBackend(AIBackend, Protocol):
    """A backend that can also deliver its answer chunk by chunk."""

    def stream(self, request: AIRequest) -> AsyncIterator[StreamChunk]:
        """Yield chunks; the last has `finish_reason` and `result`. Closing frees the call."""
        ...


def instant_result(request: AIRequest) -> dict[str, Any]:
    """A deterministic, plausible result for each of the three request types."""
    data = request.request_data
    if request.request_type == "chat_completion":
        text = f"回复用户{request.user_id}: {data['message']}"
        return {"response": text, "tokens_used": len(text), "model": "instant"}
    if request.request_type == "content_summary":
        content = str(data["content"])
        return {"summary": content[:50], "key_points": [content[:20]], "tokens_used": len(content)}
    return {
        "translated_text": f"[{data['target_language']}] {data['text']}",
        "source_language": data.get("source_language", "auto"),
        "target_language": data["target_language"],
        "confidence": 1.0,
    }


class InstantBackend:
    """Answers every request at once with `instant_result`, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        self.calls += 1
        return instant_result(request)


class FunctionBackend:
    """Adapts a coroutine function `fn(request) -> dict` to the backend protocol."""

    def __init__(self, fn: Callable[[AIRequest], Awaitable[dict[str, Any]]]) -> None:
        self._fn = fn
        self.calls = 0

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        self.calls += 1
        return await self._fn(request)
