"""Tests of the simulated LLM backend (`chatroom_async.simulated`) and its text (`tokens`).

Every test uses a fake clock: nothing waits in real time, and every seed is fixed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import math
import statistics
from typing import Any

import pytest

from chatroom_async.backend import AIRequest, StreamingAIBackend
from chatroom_async.errors import (
    AIError,
    BadRequestError,
    ContentFilterError,
    ContextTooLongError,
    OverloadedError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from chatroom_async.simulated import (
    FAILURE_MIX,
    FAULT_KINDS,
    PROFILES,
    SimSettings,
    SimStats,
    SimulatedAIBackend,
)
from chatroom_async.simulated import settings as sim_settings
from chatroom_async.simulated.tokens import PROMPT_OVERHEAD_TOKENS, estimate_tokens, has_cjk

# --------------------------------------------------------------------------- helpers


class FakeClock:
    """`sleep` advances `now` at once and yields to the loop; every sleep is recorded."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


class GateClock(FakeClock):
    """`sleep` records its duration, then blocks until `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.gate.wait()


def req(task_id: str = "t1", attempt: int = 1, request_type: str = "chat_completion",
        **data: Any) -> AIRequest:
    if not data:
        data = {"message": "How do I process AI requests asynchronously?"}
    return AIRequest(task_id=task_id, attempt=attempt, user_id=7, request_type=request_type,
                     request_data=data)


def instant(clock: FakeClock | None = None, seed: int = 1, **overrides: Any
            ) -> SimulatedAIBackend:
    return SimulatedAIBackend.from_profile("instant", seed=seed, clock=clock or FakeClock(),
                                           **overrides)


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run (no real time passes: sleep(0) only yields)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def outcome(backend: SimulatedAIBackend, request: AIRequest
                  ) -> dict[str, Any] | AIError:
    try:
        return await backend.complete(request)
    except AIError as exc:
        return exc


def within_binomial(count: int, n: int, p: float, sds: float = 4.0) -> bool:
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p))


# --------------------------------------------------------------------------- outputs


async def test_chat_completion_result_shape_english() -> None:
    result = await instant().complete(req())
    assert set(result) == {"response", "model", "usage", "tokens_used"}
    assert result["model"] == "glm-4-flash"
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert result["tokens_used"] == usage["total_tokens"]
    assert result["response"] and result["response"].isascii()
    message = "How do I process AI requests asynchronously?"
    assert usage["prompt_tokens"] == estimate_tokens(message) + PROMPT_OVERHEAD_TOKENS


async def test_cjk_message_gets_chinese_reply() -> None:
    result = await instant().complete(req(message="请问如何异步处理AI请求？"))
    assert has_cjk(result["response"])
    english = await instant().complete(req(message="Hello there"))
    assert not has_cjk(english["response"])


async def test_content_summary_shape() -> None:
    content = "异步处理机制让聊天室在等待模型时继续工作。" * 20
    result = await instant().complete(req(request_type="content_summary", content=content))
    assert has_cjk(result["summary"])
    assert result["key_points"] and all(isinstance(p, str) and p for p in result["key_points"])
    assert result["tokens_used"] == result["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(("text", "target", "source", "want_source", "want_zh"), [
    ("今天的会议改到下午三点。", "en", None, "zh", False),
    ("The meeting moved to three o'clock.", "zh-CN", None, "en", True),
    ("The meeting moved.", "zh", "en-GB", "en-GB", True),
])
async def test_translation_shape(text: str, target: str, source: str | None,
                                 want_source: str, want_zh: bool) -> None:
    data: dict[str, Any] = {"text": text, "target_language": target}
    if source:
        data["source_language"] = source
    result = await instant().complete(req(request_type="translation", **data))
    assert result["source_language"] == want_source
    assert result["target_language"] == target
    assert 0.0 <= result["confidence"] <= 1.0
    assert has_cjk(result["translated_text"]) is want_zh
    assert result["tokens_used"] == result["usage"]["total_tokens"]


async def test_unknown_request_type_and_bad_data_are_bad_requests() -> None:
    backend = instant()
    with pytest.raises(BadRequestError) as info:
        await backend.complete(req(request_type="image_generation", prompt="a cat"))
    assert info.value.retryable is False and info.value.status == 400
    with pytest.raises(BadRequestError):
        await backend.complete(req(request_type="translation", text="hi"))  # no target
    with pytest.raises(BadRequestError):
        await backend.complete(req(message="hi", max_tokens=0))
    assert backend.stats().errors == {"bad_request": 3}


def test_estimate_tokens_chinese_and_english() -> None:
    assert estimate_tokens("") == 0 and estimate_tokens("   \n") == 0
    zh = "今天天气很好，我们去公园散步吧。"  # 16 characters
    assert estimate_tokens(zh) == math.ceil(0.6 * 16)
    en = "The quick brown fox jumps over the lazy dog"  # 9 words, 9 tokens in cl100k
    assert 8 <= estimate_tokens(en) <= 12
    assert estimate_tokens("x" * 4000) == 1000  # ~4 characters per token
    assert estimate_tokens(zh + " " + en) == pytest.approx(
        estimate_tokens(zh) + estimate_tokens(en), abs=1)


@pytest.mark.parametrize("message", ["Tell me about queues.", "请介绍一下任务队列。"])
async def test_completion_tokens_match_the_estimate_of_the_text(message: str) -> None:
    backend = instant()
    for i in range(20):
        result = await backend.complete(req(f"t{i}", message=message))
        used = result["usage"]["completion_tokens"]
        assert 0.6 * used <= estimate_tokens(result["response"]) <= 1.5 * used + 2


async def test_max_tokens_clips_the_answer_with_finish_reason_length() -> None:
    backend = instant()
    chunks = [c async for c in backend.stream(req(message="hi", max_tokens=5))]
    assert chunks[-1].usage is not None and chunks[-1].usage["completion_tokens"] == 5
    assert chunks[-1].finish_reason == "length"


async def test_blocked_term_and_context_window_fail_deterministically() -> None:
    backend = instant()
    with pytest.raises(ContentFilterError) as info:
        await backend.complete(req(message="tell me [BLOCK] now"))
    assert info.value.retryable is False and info.value.code == "1301"
    small = instant(context_window=50)
    with pytest.raises(ContextTooLongError) as too_long:
        await small.complete(req(message="word " * 200))
    assert too_long.value.retryable is False and too_long.value.code == "1261"
    assert (await small.complete(req(message="short")))["response"]


# --------------------------------------------------------------------------- faults

_EXPECTED = {
    "rate_limit": (RateLimitError, 429, "1302"),
    "overloaded": (OverloadedError, 503, "1305"),
    "server_error": (ServerError, 500, "500"),
    "hang": (ServerError, 504, "504"),  # a finite hang_s ends in a gateway timeout
    "stream_break": (ServerError, 502, "1234"),  # complete() has no partial text to keep
    "content_filter": (ContentFilterError, 400, "1301"),
    "context_too_long": (ContextTooLongError, 400, "1261"),
}


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_fault_kind_happens_at_its_configured_rate(kind: str) -> None:
    rates: dict[str, Any] = {f"{k}_rate": 0.1 if k == kind else 0.0 for k in FAULT_KINDS}
    backend = instant(seed=3, hang_s=1.0, **rates)
    n, hits = 4000, 0
    cls, status, code = _EXPECTED[kind]
    for i in range(n):
        result = await outcome(backend, req(f"task-{i}"))
        if isinstance(result, AIError):
            assert (type(result), result.status, result.code) == (cls, status, code)
            hits += 1
    assert within_binomial(hits, n, 0.1), hits
    stats = backend.stats()
    assert stats.errors == {kind: hits}
    assert stats.completed == n - hits and stats.in_flight == 0


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_retryable_and_permanent_flags(kind: str) -> None:
    only: dict[str, Any] = {f"{kind}_rate": 1.0}
    backend = instant(hang_s=1.0, **only)
    error = await outcome(backend, req())
    assert isinstance(error, AIError)
    assert error.retryable is (kind not in ("content_filter", "context_too_long"))


async def test_retry_after_on_429_only_when_configured() -> None:
    without = await outcome(instant(rate_limit_rate=1.0), req())
    assert isinstance(without, RateLimitError) and without.retry_after is None
    with_it = await outcome(instant(rate_limit_rate=1.0, retry_after_s=2.5), req())
    assert isinstance(with_it, RateLimitError)
    assert (with_it.status, with_it.code, with_it.retry_after) == (429, "1302", 2.5)


async def test_failure_rate_knob_overrides_per_kind_rates_in_fixed_shares() -> None:
    settings = SimSettings(failure_rate=0.2, server_error_rate=0.9 / 10)
    rates = settings.fault_rates()
    assert rates == {k: pytest.approx(0.2 * FAILURE_MIX[k]) for k in FAULT_KINDS}
    assert sum(rates.values()) == pytest.approx(0.2)
    backend = instant(seed=5, hang_s=1.0, failure_rate=0.2)
    n = 4000
    for i in range(n):
        await outcome(backend, req(f"task-{i}"))
    errors = backend.stats().errors
    assert within_binomial(sum(errors.values()), n, 0.2), errors
    for kind in FAULT_KINDS:
        assert within_binomial(errors.get(kind, 0), n, 0.2 * FAILURE_MIX[kind]), (kind, errors)


async def test_hang_never_returns_until_cancelled() -> None:
    clock = FakeClock()
    others: dict[str, Any] = {f"{k}_rate": 0.0 for k in FAULT_KINDS if k != "hang"}
    backend = SimulatedAIBackend.from_profile("realistic", clock=clock, hang_rate=1.0,
                                              **others)
    task = asyncio.create_task(backend.complete(req()))
    await settle()
    await clock.sleep(5 * 3600)  # five hours of clock time
    await settle()
    assert not task.done()
    assert backend.stats().in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = backend.stats()
    assert (stats.in_flight, stats.cancelled, stats.errors) == (0, 1, {"hang": 1})


async def test_finite_hang_ends_in_a_gateway_timeout_after_hang_s() -> None:
    clock = GateClock()
    backend = instant(clock, hang_rate=1.0, hang_s=120.0)
    task = asyncio.create_task(backend.complete(req()))
    await settle()
    assert not task.done() and clock.sleeps == [120.0]
    clock.gate.set()
    with pytest.raises(ServerError) as info:
        await task
    assert info.value.status == 504 and backend.stats().in_flight == 0


async def test_update_changes_a_failure_rate_on_the_next_call() -> None:
    backend = instant()
    assert "response" in await backend.complete(req("a"))
    before = backend.settings
    after = backend.update(server_error_rate=1.0)
    assert backend.settings is after and before.server_error_rate == 0.0
    with pytest.raises(ServerError):
        await backend.complete(req("b"))
    backend.update(server_error_rate=0.0, failure_rate=1.0)
    assert isinstance(await outcome(backend, req("c")), AIError)
    backend.update(failure_rate=None)
    assert "response" in await backend.complete(req("d"))


def test_unknown_or_invalid_settings_are_rejected() -> None:
    backend = instant()
    with pytest.raises(TypeError):
        backend.update(failure_rte=0.2)
    with pytest.raises(ValueError):
        backend.update(server_error_rate=1.5)
    with pytest.raises(ValueError):
        backend.update(failure_rate=-0.1)
    with pytest.raises(ValueError):
        backend.update(server_error_rate=0.6, overloaded_rate=0.6)  # sum > 1
    with pytest.raises(ValueError):
        backend.update(ttft_p99_s=0.1)  # below the p50
    assert backend.settings == PROFILES["instant"]
    with pytest.raises(TypeError):
        SimulatedAIBackend(speed=3)
    with pytest.raises(TypeError):
        SimSettings(0.1)  # type: ignore[call-arg, arg-type]  # keyword-only
    with pytest.raises(ValueError):
        SimulatedAIBackend.from_profile("nope")


# --------------------------------------------------------------------------- limits


async def test_concurrency_limit_rejects_the_call_over_the_limit_at_once() -> None:
    clock = GateClock()
    backend = SimulatedAIBackend(clock=clock, failure_rate=0.0, max_concurrency=5,
                                 retry_after_s=1.0)
    tasks = [asyncio.create_task(backend.complete(req(f"t{i}"))) for i in range(6)]
    await settle()
    done = [t for t in tasks if t.done()]
    assert len(done) == 1
    error = done[0].exception()
    assert isinstance(error, RateLimitError)
    assert (error.status, error.code, error.retry_after) == (429, "1302", 1.0)
    stats = backend.stats()
    assert (stats.in_flight, stats.peak_in_flight, stats.errors) == (5, 5,
                                                                     {"concurrency_limit": 1})
    clock.gate.set()
    results = await asyncio.gather(*(t for t in tasks if t is not done[0]))
    assert all("response" in r for r in results)
    assert backend.stats().in_flight == 0 and backend.stats().completed == 5


async def test_rpm_bucket_rejects_with_1303_then_admits_after_refill() -> None:
    clock = FakeClock()
    backend = instant(clock, rpm=60)
    for i in range(60):
        await backend.complete(req(f"t{i}"))
    with pytest.raises(RateLimitError) as info:
        await backend.complete(req("over"))
    assert info.value.code == "1303" and info.value.retry_after == pytest.approx(1.0)
    clock.t += 0.5
    with pytest.raises(RateLimitError) as again:
        await backend.complete(req("over"))
    assert again.value.retry_after == pytest.approx(0.5)
    assert again.value.retry_after is not None
    clock.t += again.value.retry_after
    assert "response" in await backend.complete(req("over"))
    assert backend.stats().errors == {"frequency_limit": 2}


async def test_tpm_bucket_charges_prompt_plus_max_tokens() -> None:
    clock = FakeClock()
    backend = instant(clock, tpm=1000)
    first = await backend.complete(req("t0", message="hello", max_tokens=200))
    cost = first["usage"]["prompt_tokens"] + 200
    calls = 1
    with pytest.raises(RateLimitError) as info:
        while True:
            await backend.complete(req(f"t{calls}", message="hello", max_tokens=200))
            calls += 1
    assert calls == 1000 // cost
    missing = cost - (1000 - calls * cost)
    assert info.value.code == "1303"
    assert info.value.retry_after == pytest.approx(missing / (1000 / 60))
    assert info.value.retry_after is not None
    clock.t += info.value.retry_after
    await backend.complete(req("late", message="hello", max_tokens=200))


# --------------------------------------------------------------------------- streams


def realistic(clock: FakeClock, seed: int = 1, **overrides: Any) -> SimulatedAIBackend:
    overrides.setdefault("failure_rate", 0.0)
    return SimulatedAIBackend.from_profile("realistic", seed=seed, clock=clock, **overrides)


async def test_stream_chunks_concatenate_to_the_result() -> None:
    clock = FakeClock()
    backend = realistic(clock)
    chunks = [c async for c in backend.stream(req(message="请介绍异步处理"))]
    last = chunks[-1]
    assert last.usage is not None and last.result is not None
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.finish_reason is None and c.result is None for c in chunks[:-1])
    assert last.finish_reason in ("stop", "length")
    assert last.usage == last.result["usage"]
    assert "".join(c.text for c in chunks) == last.result["response"]
    n = last.usage["completion_tokens"]
    assert n / 2 <= len(chunks) <= n  # one or two tokens per chunk
    assert len(clock.sleeps) == len(chunks)  # TTFT, then one wait per further chunk
    stats = backend.stats()
    assert (stats.completed, stats.in_flight, stats.streams_opened, stats.streams_closed) == (
        1, 0, 1, 1)


async def test_stream_and_complete_give_the_same_result() -> None:
    for i in range(5):
        request = req(f"same-{i}", request_type="translation", text="你好，世界",
                      target_language="en")
        done = await realistic(FakeClock()).complete(request)
        chunks = [c async for c in realistic(FakeClock()).stream(request)]
        assert chunks[-1].result == done


async def test_stream_break_keeps_the_partial_text() -> None:
    backend = realistic(FakeClock(), stream_break_rate=1.0, failure_rate=None,
                        server_error_rate=0.0, overloaded_rate=0.0, hang_rate=0.0)
    partial_seen = 0
    for i in range(30):
        received: list[str] = []
        with pytest.raises(StreamInterruptedError) as info:
            async for chunk in backend.stream(req(f"t{i}")):
                received.append(chunk.text)
        assert info.value.partial_text == "".join(received)
        assert info.value.chunks_received == len(received)
        assert info.value.retryable is True
        partial_seen += bool(received)
    assert partial_seen >= 20  # most break part-way, not before the first chunk
    stats = backend.stats()
    assert (stats.in_flight, stats.errors, stats.streams_closed) == (0, {"stream_break": 30}, 30)


async def test_aclose_frees_the_slot_at_once() -> None:
    backend = realistic(FakeClock())
    stream = backend.stream(req())
    await anext(stream)
    assert backend.stats().in_flight == 1
    await stream.aclose()
    assert backend.stats().in_flight == 0 and stream.closed
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    async with backend.stream(req("ctx")) as second:
        await anext(second)
        assert backend.stats().in_flight == 1
    stats = backend.stats()
    assert (stats.in_flight, stats.streams_closed, stats.abandoned_streams) == (0, 2, 0)


async def test_aclose_from_another_task_ends_a_pending_chunk_quietly() -> None:
    clock = GateClock()
    backend = realistic(clock)
    stream = backend.stream(req())

    async def consume() -> list[str]:
        return [chunk.text async for chunk in stream]

    task = asyncio.create_task(consume())
    await settle()
    assert backend.stats().in_flight == 1
    await stream.aclose()
    assert backend.stats().in_flight == 0
    clock.gate.set()
    assert await task == []  # the chunk on its way is dropped, the iteration just ends
    assert backend.stats().completed == 0


async def test_cancelling_a_stream_frees_the_slot_at_once() -> None:
    clock = GateClock()
    backend = realistic(clock)

    async def consume() -> None:
        async for _ in backend.stream(req()):
            pass

    task = asyncio.create_task(consume())
    await settle()
    assert backend.stats().in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = backend.stats()
    assert (stats.in_flight, stats.cancelled, stats.streams_closed) == (0, 1, 1)


async def test_an_abandoned_stream_is_counted_and_its_slot_freed() -> None:
    backend = realistic(FakeClock())
    stream = backend.stream(req("dropped"))
    await anext(stream)
    assert backend.stats().in_flight == 1
    del stream
    gc.collect()
    closed = backend.stream(req("closed"))
    await anext(closed)
    await closed.aclose()
    del closed
    gc.collect()
    stats = backend.stats()
    assert (stats.abandoned_streams, stats.in_flight) == (1, 0)
    assert (stats.streams_opened, stats.streams_closed) == (2, 1)


async def test_a_stream_rejected_at_admission_raises_on_first_chunk() -> None:
    backend = instant(rate_limit_rate=1.0)
    stream = backend.stream(req())
    with pytest.raises(RateLimitError):
        await anext(stream)
    assert stream.closed and backend.stats().in_flight == 0


# --------------------------------------------------------------------------- determinism


async def timed(backend: SimulatedAIBackend, clock: FakeClock, request: AIRequest
                ) -> tuple[dict[str, Any] | AIError, float]:
    start = clock.t
    result = await outcome(backend, request)
    return result, clock.t - start


def same(a: dict[str, Any] | AIError, b: dict[str, Any] | AIError) -> bool:
    if isinstance(a, AIError) or isinstance(b, AIError):
        return type(a) is type(b) and str(a) == str(b)
    return a == b


async def test_same_seed_task_and_attempt_give_the_same_result_and_latency() -> None:
    clocks = FakeClock(), FakeClock()
    backends = [realistic(c, seed=42, failure_rate=0.3, hang_s=60.0) for c in clocks]
    for i in range(50):
        a = await timed(backends[0], clocks[0], req(f"t{i}"))
        b = await timed(backends[1], clocks[1], req(f"t{i}"))
        assert same(a[0], b[0]) and a[1] == b[1]
    attempts = [await outcome(backends[0], req("t0", attempt=k)) for k in range(1, 11)]
    assert any(not same(attempts[0], other) for other in attempts[1:])
    other_seed = realistic(FakeClock(), seed=43)
    assert not same(await outcome(other_seed, req("t0")),
                    await outcome(realistic(FakeClock(), seed=42), req("t0")))


async def test_results_do_not_depend_on_interleaving() -> None:
    requests = [req(f"t{i}", message="排队" if i % 2 else "queue") for i in range(8)]

    async def run(order: list[AIRequest]) -> dict[str, dict[str, Any] | AIError]:
        backend = realistic(FakeClock(), seed=9, failure_rate=0.3, hang_s=60.0,
                            max_concurrency=None)
        results = await asyncio.gather(*(outcome(backend, r) for r in order))
        return {r.task_id: res for r, res in zip(order, results, strict=True)}

    forward, backward = await run(requests), await run(requests[::-1])
    for task_id, result in forward.items():
        assert same(result, backward[task_id])


# --------------------------------------------------------------------------- latency


async def test_latency_matches_the_configured_distributions() -> None:
    clock = FakeClock()
    backend = realistic(clock, seed=11)
    ttfts, speeds, lengths = [], [], []
    for i in range(3000):
        clock.sleeps.clear()
        result = await backend.complete(req(f"t{i}", message="hi"))
        n = result["usage"]["completion_tokens"]
        ttfts.append(clock.sleeps[0])
        lengths.append(n)
        if n > 1:
            speeds.append((n - 1) / clock.sleeps[1])
    ttfts.sort()
    prefill = 0.025 * (estimate_tokens("hi") + PROMPT_OVERHEAD_TOKENS) / 1000
    assert statistics.median(ttfts) == pytest.approx(0.45 + prefill, rel=0.06)
    assert ttfts[int(0.99 * len(ttfts))] == pytest.approx(1.8, rel=0.2)
    assert statistics.median(speeds) == pytest.approx(70, rel=0.05)
    assert statistics.median(lengths) == pytest.approx(150, rel=0.08)
    assert len(clock.sleeps) == 2  # TTFT + decode: a handful of sleeps, not one per token


async def test_ttft_grows_with_load_and_prompt_length() -> None:
    alone, busy, long = GateClock(), GateClock(), GateClock()
    loaded = realistic(busy, max_concurrency=None)
    tasks = [asyncio.create_task(loaded.complete(req(f"other-{i}"))) for i in range(4)]
    await settle()
    tasks += [
        asyncio.create_task(loaded.complete(req("probe"))),
        asyncio.create_task(realistic(alone).complete(req("probe"))),
        asyncio.create_task(realistic(long).complete(req("probe", message="word " * 4000))),
    ]
    await settle()
    assert busy.sleeps[-1] == pytest.approx(alone.sleeps[0] * (1 + 1.5 * (4 / 5) ** 2))
    assert long.sleeps[0] > alone.sleeps[0]
    for clock in (alone, busy, long):
        clock.gate.set()
    await asyncio.gather(*tasks)


async def test_instant_profile_never_sleeps() -> None:
    clock = FakeClock()
    backend = instant(clock)
    for i in range(50):
        await backend.complete(req(f"t{i}"))
        [c async for c in backend.stream(req(f"s{i}"))]
    assert clock.sleeps == [] and backend.stats().completed == 100


def test_profiles() -> None:
    assert set(PROFILES) >= {"realistic", "instant", "flaky"}
    realistic_rates = PROFILES["realistic"].fault_rates()
    assert PROFILES["realistic"].max_concurrency == 5
    assert 0 < sum(realistic_rates.values()) < 0.05
    assert sum(PROFILES["instant"].fault_rates().values()) == 0
    assert PROFILES["instant"].max_concurrency is None
    flaky = PROFILES["flaky"]
    assert 0.10 <= sum(flaky.fault_rates().values()) <= 0.20
    assert flaky.retry_after_s and flaky.max_concurrency == 5
    backend = SimulatedAIBackend.from_profile("flaky", seed=3, max_concurrency=2)
    assert backend.settings.max_concurrency == 2 and backend.settings.rate_limit_rate > 0


def test_settings_live_in_sim_settings_and_are_re_exported() -> None:
    assert SimSettings is sim_settings.SimSettings and SimStats is sim_settings.SimStats
    assert PROFILES is sim_settings.PROFILES and FAULT_KINDS is sim_settings.FAULT_KINDS
    assert FAILURE_MIX is sim_settings.FAILURE_MIX


def test_estimated_latency_is_the_mean_of_ttft_plus_decode() -> None:
    s = SimSettings(ttft_p50_s=0.5, ttft_p99_s=0.5, output_tps_p50=50.0, output_tps_sigma=0.0,
                    output_tokens_p50=101.0, output_tokens_sigma=0.0)
    assert s.estimated_latency_s() == pytest.approx(0.5 + 100 / 50.0)  # no spread: medians
    spread = SimSettings()
    assert spread.estimated_latency_s() > spread.ttft_p50_s + 149 / spread.output_tps_p50
    assert PROFILES["instant"].estimated_latency_s() == 0.0


# --------------------------------------------------------------------------- TTFT hook


def hooked(clock: FakeClock, **overrides: Any
           ) -> tuple[SimulatedAIBackend, list[tuple[str, int, float]]]:
    """A realistic backend whose `on_first_token` calls land in the returned list."""
    seen: list[tuple[str, int, float]] = []
    backend = realistic(clock, **overrides)
    backend.on_first_token = lambda request, ttft_s: seen.append(
        (request.task_id, request.attempt, ttft_s))
    return backend, seen


async def test_first_token_hook_reports_the_ttft_wait_of_complete() -> None:
    clock = FakeClock()
    backend, seen = hooked(clock)
    for i in range(20):
        clock.sleeps.clear()
        await backend.complete(req(f"t{i}", attempt=2))
        assert seen[-1] == (f"t{i}", 2, clock.sleeps[0])  # the first of the two sleeps
    assert len(seen) == 20


async def test_first_token_hook_fires_before_the_first_chunk_of_a_stream() -> None:
    clock = FakeClock()
    backend, seen = hooked(clock)
    stream = backend.stream(req("s1"))
    assert seen == []  # nothing happens before the first chunk is asked for
    first = await anext(stream)
    assert first.index == 0 and seen == [("s1", 1, clock.sleeps[0])]
    rest = [c async for c in stream]
    assert rest[-1].result is not None and len(seen) == 1  # once per call, not per chunk


async def test_first_token_hook_includes_load_and_incident_factors() -> None:
    calm_clock, bad_clock = FakeClock(), FakeClock()
    calm, calm_seen = hooked(calm_clock)
    bad, bad_seen = hooked(bad_clock)
    bad.set_incident(1e6, overload_rate=0.0, latency_factor=3.0)
    await calm.complete(req())
    await bad.complete(req())
    assert bad_seen[0][2] == pytest.approx(3.0 * calm_seen[0][2])
    assert bad_seen[0][2] == bad_clock.sleeps[0]


async def test_first_token_hook_skips_calls_that_fail_before_their_first_token() -> None:
    clock = FakeClock()
    rejected, seen = hooked(clock, failure_rate=None, overloaded_rate=1.0,
                            server_error_rate=0.0, hang_rate=0.0, stream_break_rate=0.0)
    with pytest.raises(OverloadedError):
        await rejected.complete(req())
    server, server_seen = hooked(clock, failure_rate=None, server_error_rate=1.0,
                                 overloaded_rate=0.0, hang_rate=0.0, stream_break_rate=0.0)
    with pytest.raises(ServerError):
        await server.complete(req())
    with pytest.raises(ServerError):
        await anext(server.stream(req("s")))
    hung, hung_seen = hooked(clock, failure_rate=None, hang_rate=1.0, hang_s=5.0,
                             overloaded_rate=0.0, server_error_rate=0.0, stream_break_rate=0.0)
    with pytest.raises(ServerError):
        await hung.complete(req())
    assert seen == server_seen == hung_seen == []


async def test_first_token_hook_fires_for_a_call_that_breaks_later() -> None:
    backend, seen = hooked(FakeClock(), failure_rate=None, stream_break_rate=1.0,
                           server_error_rate=0.0, overloaded_rate=0.0, hang_rate=0.0)
    with pytest.raises(ServerError):
        await backend.complete(req("c"))
    with pytest.raises(StreamInterruptedError):
        [c async for c in backend.stream(req("s"))]
    assert [task_id for task_id, _, _ in seen] == ["c", "s"]


async def test_first_token_hook_gets_zero_without_latency_and_passes_from_profile() -> None:
    seen: list[float] = []
    backend = SimulatedAIBackend.from_profile(
        "instant", clock=FakeClock(), on_first_token=lambda _request, ttft_s: seen.append(ttft_s))
    await backend.complete(req())
    [c async for c in backend.stream(req("s"))]
    assert seen == [0.0, 0.0]


# --------------------------------------------------------------------------- incidents


async def test_manual_incident_raises_the_overload_rate_for_its_duration_only() -> None:
    clock = FakeClock()
    backend = instant(clock, seed=2)
    backend.set_incident(60.0, overload_rate=0.5)
    assert backend.incident_active()
    during = [await outcome(backend, req(f"a{i}")) for i in range(1000)]
    overloaded = sum(isinstance(r, OverloadedError) for r in during)
    assert within_binomial(overloaded, 1000, 0.5)
    clock.t += 61.0
    assert not backend.incident_active()
    after = [await outcome(backend, req(f"b{i}")) for i in range(1000)]
    assert not any(isinstance(r, AIError) for r in after)


async def test_incident_multiplies_latency() -> None:
    calm_clock, bad_clock = FakeClock(), FakeClock()
    calm, bad = realistic(calm_clock), realistic(bad_clock)
    bad.set_incident(1e6, overload_rate=0.0, latency_factor=3.0)
    _, calm_s = await timed(calm, calm_clock, req())
    _, bad_s = await timed(bad, bad_clock, req())
    assert bad_s == pytest.approx(3.0 * calm_s)


async def test_markov_incidents_are_bursty_and_seeded() -> None:
    async def run(seed: int) -> list[bool]:
        clock = FakeClock()
        backend = instant(clock, seed=seed, incident_mean_gap_s=100.0,
                          incident_mean_length_s=20.0, incident_overload_rate=1.0)
        marks = []
        for i in range(12_000):
            clock.t += 1.0
            marks.append(isinstance(await outcome(backend, req(f"t{i}")), OverloadedError))
        return marks

    marks = await run(4)
    share = sum(marks) / len(marks)
    assert 0.08 <= share <= 0.30  # ~ 20 / (100 + 20)
    runs = sum(1 for a, b in zip([False, *marks], marks, strict=False) if b and not a)
    assert sum(marks) / runs > 8  # failures come in bursts, not one by one
    assert marks == await run(4)
    assert marks != await run(5)


# --------------------------------------------------------------------------- protocol, stats


async def test_backend_satisfies_the_streaming_protocol_and_counts_tokens() -> None:
    backend = instant()
    assert isinstance(backend, StreamingAIBackend)
    results = [await backend.complete(req(f"t{i}")) for i in range(3)]
    stats = backend.stats()
    assert stats.calls == stats.completed == 3
    assert stats.prompt_tokens == sum(r["usage"]["prompt_tokens"] for r in results)
    assert stats.completion_tokens == sum(r["usage"]["completion_tokens"] for r in results)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.calls = 0  # type: ignore[misc]
