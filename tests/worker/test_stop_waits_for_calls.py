"""stop() never cancels the renewer in the middle of a Redis call.

redis-py can swallow a cancel that lands inside a command (measured with redis-py 8.2: a
loop of ZADDs cancelled at random moments went on running in about a quarter of the
cases), and a loop that goes on makes stop() wait forever. So the pool ends its renewer
and flusher while they wait, and lets a call in progress finish first. Here, in virtual
time, the registration call the renewer makes takes 5 s and swallows cancels, as such a
call would; stop() must still return.
"""

from __future__ import annotations

import asyncio

from chatroom_async import AsyncAIProcessor, FunctionBackend, ProcessorSettings
from chatroom_async.clock import LoopClock
from chatroom_async.simulation.vtime import run_virtual
from chatroom_async.store.embedded import embedded_redis


async def answer(_: object) -> dict[str, str]:
    return {"text": "ok"}


def test_stop_lets_a_call_in_progress_finish_instead_of_cancelling_it() -> None:
    async def main() -> list[str]:
        clock = LoopClock(1_767_225_600.0)
        redis = embedded_redis()
        proc = AsyncAIProcessor(max_workers=2, backend=FunctionBackend(answer), redis=redis,
                                clock=clock, namespace="stopping",
                                settings=ProcessorSettings(lease_s=3.0))  # renews every 1 s
        await proc.start()
        assert proc.queue is not None
        original = proc.queue.register_worker
        calls: list[str] = []
        inside = asyncio.Event()

        async def slow_register(*args: object, **kwargs: object) -> None:
            calls.append("began")
            inside.set()
            try:
                await clock.sleep(5.0)
            except asyncio.CancelledError:
                calls.append("cancel swallowed")  # as redis-py may do
            await original(*args, **kwargs)  # type: ignore[arg-type]
            calls.append("ended")

        proc.queue.register_worker = slow_register  # type: ignore[method-assign]
        await inside.wait()  # the renewer is inside the call now
        try:
            await asyncio.wait_for(proc.stop(), timeout=60)  # virtual seconds: at once
        finally:
            await redis.aclose()
        return calls

    calls = run_virtual(main)
    assert calls == ["began", "ended"]  # finished, not cancelled; and no later call began
