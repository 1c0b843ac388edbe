"""What the two graded exercises plug into: the streaming frame and client protocol, the
adapters that put a student's handler or scheduler inside the real processor, and the
loader that imports `exercises.<name>` (or `solutions.<name>`).

Imports only the package's public API. Nothing here is graded; the checks live in
`chatroom_async.grading.checks`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from chatroom_async import AIBackend, AIRequest, StreamChunk

#: How the grader's runner and its pytest plugin (in a child process) talk: the pipe the
#: child reports on, the project folder, and the real seconds one check may take (the
#: runner kills the run a little after this). Here, not in the plugin: the plugin imports
#: pytest, which the package's command line must not need.
FD_ENV = "CHATROOM_ASYNC_GRADE_FD"
ROOT_ENV = "CHATROOM_ASYNC_ROOT"
LIMIT_ENV = "CHATROOM_ASYNC_GRADE_LIMIT_S"
CHECK_LIMIT_S = float(os.environ.get(LIMIT_ENV) or 20.0)

#: Frame kinds, in the order a client may see them for one attempt.
FRAME_KINDS = ("delta", "done", "error", "cancelled", "retry")
#: Kinds that end a task's stream for good.
TERMINAL_KINDS = frozenset({"done", "error", "cancelled"})
#: The environment variable naming the implementation to load: "exercises" or "solutions".
IMPL_ENV = "CHATROOM_ASYNC_IMPL"
IMPLS = ("exercises", "solutions")


@dataclass(frozen=True, slots=True)
class Frame:
    """One push to a client.

    Attributes:
        task_id: the task the frame belongs to.
        seq: the frame's sequence number: 1 for a task's first frame, then increasing. A
            frame that merges several carries the seq of the last one it contains.
        kind: "delta" (new text), "done" (the answer is complete), "error" (the stream
            broke; `text` is the partial answer so far), "cancelled" (`text` likewise),
            "retry" (a new attempt begins: forget the text of the earlier one).
        text: the new text of a delta, the partial answer of error/cancelled, else "".
        error: "ErrorType: message" on error and cancelled frames.
    """

    task_id: str
    seq: int
    kind: str
    text: str = ""
    error: str | None = None


@runtime_checkable
class StreamClient(Protocol):
    """Where frames go: a WebSocket, a notebook cell, a test's recorder."""

    async def send(self, frame: Frame) -> None:
        """Deliver one frame; raises (e.g. ConnectionError) once the client is gone."""
        ...


def render(frames: Iterable[Frame]) -> str:
    """The text a user sees after `frames`, in order: deltas append, retry clears, an
    error or cancelled frame shows its partial text."""
    text = ""
    for frame in frames:
        if frame.kind == "delta":
            text += frame.text
        elif frame.kind == "retry":
            text = ""
        elif frame.kind in ("error", "cancelled"):
            text = frame.text
    return text


class StreamingHandler(Protocol):
    """The part of exercise 1's `StreamingResponseHandler` the processor drives."""

    async def handle_streaming_response(self, task_id: str,
                                        response_stream: AsyncIterator[StreamChunk]
                                        ) -> dict[str, Any]: ...


class HandlerBackend:
    """A backend whose answers stream through a handler: runs exercise 1 in the processor.

    `complete(request)` opens `inner.stream(request)` and hands it to
    `handler.handle_streaming_response(task_id, stream)`, which pushes frames to the task's
    clients and returns the final result. Cancel, timeout and retries reach the handler as
    they reach any backend call. The handler owns the stream: it must close it.
    """

    def __init__(self, inner: AIBackend, handler: StreamingHandler) -> None:
        if not callable(getattr(inner, "stream", None)):
            raise TypeError(f"{type(inner).__name__} cannot stream: it has no stream()")
        self.inner, self.handler = inner, handler

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        stream = self.inner.stream(request)  # type: ignore[attr-defined]
        return await self.handler.handle_streaming_response(request.task_id, stream)


class _QueueClient:
    """A client that puts every frame it is sent on a queue (for `HandlerStreamBackend`)."""

    def __init__(self, queue: asyncio.Queue[Frame | None]) -> None:
        self.queue = queue

    async def send(self, frame: Frame) -> None:
        self.queue.put_nowait(frame)


class HandlerStreamBackend:
    """Exercise 1 in the chat room: the handler's "delta" frames become the processor's
    stream, so whatever the student's handler pushes (coalesced or not) is what the page
    shows, token by token; its return value is the task's result.

    `complete()` goes to `inner` unchanged; `stream()` opens `inner.stream()`, hands it to
    `handler.handle_streaming_response`, and yields a `StreamChunk` per delta frame the
    handler sends to a client attached for the task. A handler that raises fails the
    attempt as any backend error does.

    A retry of a task this process streamed before attaches after the last frame it got
    (the handler keeps a task's frames for clients that attach late), and what the earlier
    attempt still sends is dropped up to the handler's "retry" frame, as a page drops the
    earlier text: each attempt's chunks are its own. (A handler that sends no "retry" frame
    has that attempt's text come whole, at its end.)
    """

    #: tasks whose last frame seq this bridge remembers, at most (the oldest are forgotten)
    remembered = 1000

    def __init__(self, inner: AIBackend, handler: Any) -> None:
        if not callable(getattr(inner, "stream", None)):
            raise TypeError(f"{type(inner).__name__} cannot stream: it has no stream()")
        self.inner, self.handler = inner, handler
        self._last_seq: dict[str, int] = {}  # task id -> the last frame's seq it got

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        return await self.inner.complete(request)

    async def stream(self, request: AIRequest) -> AsyncIterator[StreamChunk]:
        task_id = request.task_id
        queue: asyncio.Queue[Frame | None] = asyncio.Queue()
        client = _QueueClient(queue)
        before = self._last_seq.pop(task_id, None)  # None: its first attempt here
        self._last_seq[task_id] = last_seq = before or 0  # re-added as the newest
        while len(self._last_seq) > self.remembered:
            del self._last_seq[next(iter(self._last_seq))]
        await self.handler.attach(task_id, client, last_seq)
        run = asyncio.ensure_future(self.handler.handle_streaming_response(
            task_id, self.inner.stream(request)))  # type: ignore[attr-defined]
        run.add_done_callback(lambda _: queue.put_nowait(None))
        # On a retry, until the "retry" frame: the earlier attempt's last frames
        earlier: list[str] | None = [] if before is not None else None
        index = 0
        try:
            while (frame := await queue.get()) is not None:
                if task_id in self._last_seq:
                    self._last_seq[task_id] = max(self._last_seq[task_id], frame.seq)
                if earlier is not None:
                    if frame.kind == "retry":
                        earlier = None
                    elif frame.kind == "delta":
                        earlier.append(frame.text)
                elif frame.kind == "delta" and frame.text:
                    yield StreamChunk(index, frame.text)
                    index += 1
            result = await run  # the handler's own error, if it raised
            if earlier:  # no "retry" frame came: what came is this attempt's
                yield StreamChunk(index, "".join(earlier))
                index += 1
            yield StreamChunk(index, "", finish_reason="stop", result=dict(result))
        finally:
            if not run.done():
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
            self.handler.detach(request.task_id, client)


class BackendScheduler(Protocol):
    """The parts of exercise 2's `IntelligentTaskScheduler` that sit around backend calls."""

    async def call_backend(self, backend: AIBackend, request: AIRequest) -> dict[str, Any]: ...

    async def call_batched(self, backend: BatchBackend,
                           request: AIRequest) -> dict[str, Any]: ...


class BatchBackend(AIBackend, Protocol):
    """A backend that can also answer several requests in one provider call."""

    async def complete_batch(self, requests: Sequence[AIRequest]) -> list[dict[str, Any]]: ...


class ScheduledBackend:
    """A backend whose every call goes through the scheduler: runs exercise 2's adaptive
    concurrency (`call_backend`) or its batching (`call_batched`) in the processor."""

    def __init__(self, inner: AIBackend, scheduler: BackendScheduler, *,
                 batching: bool = False) -> None:
        if batching and not callable(getattr(inner, "complete_batch", None)):
            raise TypeError(f"{type(inner).__name__} has no complete_batch(): cannot batch")
        self.inner, self.scheduler, self.batching = inner, scheduler, batching

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        if self.batching:
            return await self.scheduler.call_batched(self.inner, request)  # type: ignore[arg-type]
        return await self.scheduler.call_backend(self.inner, request)


# -- loading the student's code ------------------------------------------------------------
def find_root(start: Path | None = None) -> Path:
    """The project folder holding `exercises/` and `solutions/`.

    Args:
        start: that folder itself; None searches up from the working directory, then the
            package's own checkout.

    Raises:
        FileNotFoundError: no such folder.
    """
    if start is not None:
        folders = [start.resolve()]
    else:
        here = Path.cwd().resolve()
        folders = [here, *here.parents, Path(__file__).resolve().parents[2]]
    for folder in folders:
        if (folder / "exercises").is_dir() and (folder / "solutions").is_dir():
            return folder
    raise FileNotFoundError(f"no folder with exercises/ and solutions/ at "
                            f"{' or '.join(str(f) for f in folders[:1] + folders[-1:])}")


def load_exercise(name: str, impl: str | None = None, root: Path | None = None) -> ModuleType:
    """Import `<impl>.<name>` from the project folder (`find_root`).

    Args:
        name: "streaming" or "scheduling".
        impl: "exercises" or "solutions"; default: the CHATROOM_ASYNC_IMPL environment
            variable, else "exercises".
        root: the project folder (default `find_root()`).
    """
    impl = impl or os.environ.get(IMPL_ENV, "exercises")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    folder = str(root or find_root())
    if sys.path[:1] != [folder]:  # first, ahead of any other checkout on the path
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    return importlib.import_module(f"{impl}.{name}")
