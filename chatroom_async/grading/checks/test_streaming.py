"""Graded checks of exercise 1 (练习1 流式响应处理): `StreamingResponseHandler`.

Each check is one idea, measured in virtual time on scripted streams or inside the real
processor. Collected only by `chatroom-async grade` (never by the project's test suite).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatroom_async import AIRequest, AsyncAIProcessor, LoopClock, ProcessorSettings
from chatroom_async.grading import HandlerBackend
from chatroom_async.grading.harness import (
    GradingError,
    RecordingClient,
    ScriptedBackend,
    ScriptedStream,
    Watch,
    close_quietly,
    run_scenario,
    script,
    surface,
    timed,
    wait_ended,
)

HANDLE = "handle_streaming_response"


def new_handler(exercise: Any) -> Any:
    return exercise("streaming").StreamingResponseHandler()


async def drive(handler: Any, task_id: str, stream: ScriptedStream) -> Any:
    return await timed(handler.handle_streaming_response(task_id, stream), HANDLE)


class TimedHandler(Watch):
    """The student's handler as the processor sees it, each call watched for blocking and
    for errors the worker would turn into a failed task."""

    def __init__(self, handler: Any) -> None:
        super().__init__()
        self.handler = handler

    async def handle_streaming_response(self, task_id: str, stream: Any) -> Any:
        return await self.run(self.handler.handle_streaming_response(task_id, stream), HANDLE)


def processor(backend: Any) -> AsyncAIProcessor:
    return AsyncAIProcessor(max_workers=2, backend=backend, clock=LoopClock(), seed=1,
                            settings=ProcessorSettings(publish_events=False, lease_s=600.0))


def check_seqs(frames: list[Any], who: str = "客户端") -> None:
    seqs = [f.seq for f in frames]
    if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
        raise GradingError(f"{who}收到的 seq 不是严格递增的：{seqs[:12]}...")


@pytest.mark.points(15, title="首字延迟 first text fast",
                    hint="第一段文字要立刻推送：先到的 token 不该等“凑够一批”或等整段回答结束。"
                         "想一想用户盯着空白屏幕的那段时间（见 08 笔记本「首字延迟」一节）。")
def test_first_text_fast(exercise: Any) -> None:
    async def main() -> None:
        handler = new_handler(exercise)
        client = RecordingClient()
        await handler.attach("t-first", client)
        stream = ScriptedStream(*script(40, 0.02))
        await drive(handler, "t-first", stream)
        await wait_ended(client, 5.0)
        await close_quietly(handler)
        first = client.delivered_at(1)
        if first is None:
            raise GradingError("客户端没有收到任何 delta 帧")
        late = first - stream.produced[0]
        if late > 0.010:
            raise GradingError(f"首个文本在后端首个 chunk 之后 {late * 1000:.0f} 毫秒才推送"
                               "（要求 ≤ 10 毫秒）")

    run_scenario(main)


@pytest.mark.points(15, title="完整有序 complete, in order",
                    hint="把每个 chunk 的文字按顺序推送，一个都不能丢；每帧的 seq 从 1 开始递增，"
                         "最后用一个 done 帧收尾，并把最后一个 chunk 的 result 返回给处理器"
                         "（见 08 笔记本「帧与序号」一节）。")
def test_complete_in_order(exercise: Any) -> None:
    async def main() -> None:
        handler = new_handler(exercise)
        pieces, gaps = script(60, 0.015)
        backend = ScriptedBackend(lambda req: ScriptedStream(pieces, gaps))
        client = RecordingClient()
        await handler.attach("t-order", client)
        watched = TimedHandler(handler)
        async with processor(HandlerBackend(backend, watched)) as p:
            await p.submit_task(1, "chat_completion", {"message": "你好"}, task_id="t-order")
            final = await p.wait_for_task("t-order", timeout=60)
            watched.raise_caught()
            await wait_ended(client, 5.0)
        await close_quietly(handler)
        full = "".join(pieces)
        if final["status"] != "completed":
            raise GradingError(f"任务没有完成：{final['status']} {final.get('error_message')}")
        if final["result"] != {"response": full}:
            raise GradingError("handle_streaming_response 没有返回最后一个 chunk 的 result")
        if client.text != full:
            raise GradingError(f"delta 拼起来不等于完整回答：收到 {client.text[:40]!r}...")
        if client.frames[0].seq != 1 or any(f.task_id != "t-order" for f in client.frames):
            raise GradingError("第一帧的 seq 应为 1，且每帧的 task_id 都是该任务的 id")
        check_seqs(client.frames)
        kinds = [f.kind for f in client.frames]
        if kinds.count("done") != 1 or kinds[-1] != "done":
            raise GradingError(f"应以唯一一个 done 帧结束，实际帧类型序列结尾为 {kinds[-4:]}")

    run_scenario(main)


@pytest.mark.points(15, title="合并推送 coalescing",
                    hint="推送太频繁了，或者文字等得太久。用户分辨不出 20 毫秒和 50 毫秒的差别，"
                         "但每次推送都有开销：把一小段时间内到达的 token 合并成一帧，同时保证"
                         "没有文字被压得太久（见 08 笔记本「合并推送」一节）。")
def test_coalesced(exercise: Any) -> None:
    async def main() -> None:
        handler = new_handler(exercise)
        client = RecordingClient()
        await handler.attach("t-fast", client)
        stream = ScriptedStream(*script(400, 0.005))  # 200 chunks per second
        await drive(handler, "t-fast", stream)
        await wait_ended(client, 5.0)
        await close_quietly(handler)
        if client.text != stream.full_text:
            raise GradingError("合并后的文字拼起来不等于完整回答")
        times = [t for f, t in zip(client.frames, client.times, strict=True)
                 if f.kind == "delta"]
        busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        if busiest > 25:
            raise GradingError(f"一秒内推送了 {busiest} 个 delta 帧（后端每秒 200 个 chunk；"
                               "要求任意 1 秒内 ≤ 25 帧）")
        chars = 0
        for piece, produced in zip(stream.pieces, stream.produced, strict=True):
            chars += len(piece)
            delay = (client.delivered_at(chars) or float("inf")) - produced
            if delay > 0.100:
                raise GradingError(f"有文字在处理器里等了 {delay * 1000:.0f} 毫秒才推送"
                                   "（要求每段文字 ≤ 100 毫秒）")

    run_scenario(main)


@pytest.mark.points(15, title="中断与重试 interruption",
                    hint="流在中途断开时，已经收到的文字不能丢：推给客户端，再发一个带部分文字"
                         "的 error 帧，然后把异常继续抛出，让处理器去重试；同一任务的下一次尝试"
                         "先发 retry 帧（见 08 笔记本「中断与重试」一节）。")
def test_interrupted(exercise: Any) -> None:
    async def direct() -> None:
        handler = new_handler(exercise)
        client = RecordingClient()
        await handler.attach("t-cut", client)
        pieces, gaps = script(30, 0.02)
        stream = ScriptedStream(pieces, gaps, break_after=12)
        try:
            await drive(handler, "t-cut", stream)
        except Exception as exc:  # noqa: BLE001 - the kind is checked below
            if type(exc).__name__ != "StreamInterruptedError":
                raise GradingError(f"应当把 StreamInterruptedError 继续抛出，却抛出了 "
                                   f"{type(exc).__name__}") from exc
        else:
            raise GradingError("流断了，handle_streaming_response 却正常返回：处理器就不会重试")
        await wait_ended(client, 5.0)
        await close_quietly(handler)
        partial = "".join(pieces[:12])
        last = client.frames[-1]
        if client.text != partial:
            raise GradingError(f"断开前收到的文字没有全部推送：{client.text!r} != {partial!r}")
        if last.kind != "error" or last.text != partial or not last.error:
            raise GradingError(f"最后一帧应为 error，text 为已收到的部分文字，error 说明原因；"
                               f"实际是 {last.kind!r}")

    async def with_retry() -> None:
        handler = new_handler(exercise)
        pieces, gaps = script(20, 0.02)

        def make(req: AIRequest) -> ScriptedStream:
            return ScriptedStream(pieces, gaps, break_after=5 if req.attempt == 1 else None)

        client = RecordingClient()
        await handler.attach("t-retry", client)
        watched = TimedHandler(handler)
        async with processor(HandlerBackend(ScriptedBackend(make), watched)) as p:
            await p.submit_task(1, "chat_completion", {"message": "你好"}, task_id="t-retry")
            final = await p.wait_for_task("t-retry", timeout=60)
        await close_quietly(handler)
        watched.raise_caught()
        kinds = [f.kind for f in client.frames]
        if final["status"] != "completed" or "retry" not in kinds:
            raise GradingError(f"第二次尝试之前应先发 retry 帧；帧类型依次为 {kinds}")
        if kinds.index("error") > kinds.index("retry") or kinds[-1] != "done":
            raise GradingError(f"帧的先后应是 …error, retry, …done；实际为 {kinds}")
        check_seqs(client.frames)

    run_scenario(direct)
    run_scenario(with_retry)


@pytest.mark.points(15, title="及时取消 cancel closes the stream",
                    hint="任务被取消时，协程里会抛出 CancelledError：立刻关闭后端的流（它占着"
                         "提供方的一个并发名额），告诉客户端已取消，然后让 CancelledError 继续"
                         "向外抛（见 08 笔记本「取消」一节，想想 contextlib.aclosing）。")
def test_cancel(exercise: Any) -> None:
    async def direct() -> None:
        handler = new_handler(exercise)
        client = RecordingClient()
        await handler.attach("t-cancel", client)
        stream = ScriptedStream(*script(200, 0.05))
        job = asyncio.ensure_future(drive(handler, "t-cancel", stream))
        await asyncio.sleep(1.0)
        cancelled_at = asyncio.get_running_loop().time()
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        surface(job)
        await wait_ended(client, 5.0)
        await close_quietly(handler)
        if not job.cancelled():
            raise GradingError("CancelledError 被吞掉了：取消之后协程应当以 CancelledError 结束")
        if stream.closed_at is None or stream.closed_at - cancelled_at > 0.01:
            raise GradingError("取消之后后端的流没有被关闭（没有调用 aclose()）")
        partial = "".join(stream.pieces[:len(stream.produced)])
        last = client.frames[-1]
        if last.kind != "cancelled" or last.text != partial:
            raise GradingError(f"客户端应收到带部分文字的 cancelled 帧，最后一帧却是 {last.kind!r}")

    async def in_processor() -> None:
        handler = new_handler(exercise)
        backend = ScriptedBackend(lambda req: ScriptedStream(*script(200, 0.05)))
        client = RecordingClient()
        await handler.attach("t-cancel2", client)
        watched = TimedHandler(handler)
        async with processor(HandlerBackend(backend, watched)) as p:
            await p.submit_task(1, "chat_completion", {"message": "你好"}, task_id="t-cancel2")
            await asyncio.sleep(2.0)
            await p.cancel_task("t-cancel2")
            watched.raise_caught()
            await wait_ended(client, 5.0)
        await close_quietly(handler)
        if backend.streams[0].closed_at is None:
            raise GradingError("处理器取消任务后，后端的流没有被关闭")

    run_scenario(direct)
    run_scenario(in_processor)


@pytest.mark.points(15, title="断线续传 resume",
                    hint="客户端断开（send 抛出异常）不能打断整个流；把推送过的帧按 seq 记下来，"
                         "客户端带着最后收到的 seq 重新连接时，从下一段补发（见 08 笔记本"
                         "「断线续传」一节）。")
def test_resume(exercise: Any) -> None:
    async def main() -> None:
        handler = new_handler(exercise)
        a = RecordingClient(fail_at_seq=4)
        await handler.attach("t-resume", a)
        stream = ScriptedStream(*script(60, 0.02))
        job = asyncio.ensure_future(drive(handler, "t-resume", stream))
        await asyncio.sleep(0.8)
        if job.done():
            job.result()  # what the handler raised, as it is
        if not a.frames:
            raise GradingError("断线前客户端一帧也没收到")
        b = RecordingClient()
        last_seq = a.frames[-1].seq
        await handler.attach("t-resume", b, last_seq=last_seq)
        try:
            result = await job
        except ConnectionError as exc:
            raise GradingError("一个客户端断开，整个 handle_streaming_response 就失败了") from exc
        await wait_ended(b, 5.0, "重连的客户端")
        c = RecordingClient()
        await handler.attach("t-resume", c, last_seq=0)
        await wait_ended(c, 5.0, "流结束后才连上的客户端")
        await close_quietly(handler)
        full = stream.full_text
        if result != {"response": full}:
            raise GradingError("handle_streaming_response 没有返回最后一个 chunk 的 result")
        if a.text + b.text != full:
            raise GradingError(f"断线前后拼起来不是完整回答：续传从 seq {last_seq} 之后开始，"
                               "有文字丢了或重复了")
        if any(f.seq <= last_seq for f in b.frames):
            raise GradingError(f"续传时重发了 seq ≤ {last_seq} 的帧")
        if c.text != full or c.frames[-1].kind != "done":
            raise GradingError("流结束后以 last_seq=0 连接，应收到全部文字和 done 帧")

    run_scenario(main)


@pytest.mark.points(10, title="慢客户端 slow client",
                    hint="一个很慢的客户端拖住了工作者：别在读后端的循环里 await 客户端的 send。"
                         "给每个客户端一个自己的发送任务和缓冲，积压的文字合并后再发（见 08 笔记本"
                         "「慢客户端」一节）。")
def test_slow_client(exercise: Any) -> None:
    async def main() -> None:
        handler = new_handler(exercise)
        fast, slow = RecordingClient(), RecordingClient(delay_s=0.5)
        await handler.attach("t-slow", fast)
        await handler.attach("t-slow", slow)
        stream = ScriptedStream(*script(150, 0.014))
        await drive(handler, "t-slow", stream)
        returned = asyncio.get_running_loop().time()
        await wait_ended(fast, 1.0, "快客户端")
        await wait_ended(slow, 30.0, "慢客户端")
        await close_quietly(handler)
        lag = returned - stream.produced[-1]
        if lag > 0.05:
            raise GradingError(f"后端最后一个 chunk 之后 {lag:.2f} 秒 handle_streaming_response "
                               "才返回：工作者在等慢客户端（要求 ≤ 0.05 秒）")
        for who, client in (("快客户端", fast), ("慢客户端", slow)):
            if client.text != stream.full_text:
                raise GradingError(f"{who}收到的文字不完整")
            check_seqs(client.frames, who)

    run_scenario(main)
