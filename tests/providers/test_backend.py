"""OpenAIBackend over real HTTP against sim-server on a free loopback port: results, streams,
usage, and every failure kind mapped onto the package's error tree."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from chatroom_async import (  # noqa: E402
    AITimeoutError,
    BadRequestError,
    ContentFilterError,
    ContextTooLongError,
    OverloadedError,
    RateLimitError,
    ServerError,
    StreamChunk,
    StreamInterruptedError,
)
from chatroom_async.providers import ProviderAuthError, SimServer  # noqa: E402
from chatroom_async.simulated import SimulatedAIBackend  # noqa: E402
from tests.providers.helpers import backend_for, request, serving  # noqa: E402

TYPES = ("chat_completion", "content_summary", "translation")


async def collect(backend: Any, req: Any) -> list[StreamChunk]:
    return [chunk async for chunk in backend.stream(req)]


@pytest.mark.parametrize("request_type", TYPES)
async def test_results_have_the_simulators_keys_and_usage(request_type: str) -> None:
    local = await SimulatedAIBackend.from_profile("instant").complete(request(request_type))
    async with serving() as server, backend_for(server) as backend:
        result = await backend.complete(request(request_type))
        streamed = (await collect(backend, request(request_type, task_id="t2")))[-1].result
        sim = server.backend.stats()
    assert set(result) == set(local) and streamed is not None and set(streamed) == set(local)
    assert result["usage"]["prompt_tokens"] > 0 and result["usage"]["completion_tokens"] > 0
    assert result["tokens_used"] == result["usage"]["total_tokens"]
    assert result["model"] == "glm-4-flash"
    # the usage recorded is what the provider counted, call by call
    assert sim.prompt_tokens == result["usage"]["prompt_tokens"] + streamed["usage"][
        "prompt_tokens"]
    assert sim.completion_tokens == (result["usage"]["completion_tokens"]
                                     + streamed["usage"]["completion_tokens"])


async def test_a_stream_arrives_as_chunks_that_add_up_to_the_answer() -> None:
    async with serving() as server, backend_for(server) as backend:
        chunks = await collect(backend, request())
    *body, last = chunks
    assert len(body) > 10 and [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.text and c.finish_reason is None and c.result is None for c in body)
    assert last.finish_reason == "stop" and last.result is not None and last.usage is not None
    assert "".join(c.text for c in chunks) == last.result["response"]
    assert last.usage["completion_tokens"] == last.result["usage"]["completion_tokens"]


async def test_a_stream_with_max_tokens_finishes_with_length() -> None:
    async with serving() as server, backend_for(server) as backend:
        chunks = await collect(backend, request(max_tokens=5))
        result = await backend.complete(request(max_tokens=5, task_id="t3"))
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage["completion_tokens"] == 5
    assert result["usage"]["completion_tokens"] == 5


FAILURES = [
    ({"rate_limit_rate": 1.0, "retry_after_s": 2.5}, RateLimitError, "1302"),
    ({"overloaded_rate": 1.0}, OverloadedError, "1305"),
    ({"server_error_rate": 1.0}, ServerError, "500"),
    ({"hang_rate": 1.0, "hang_s": 0.05}, ServerError, "504"),
    ({"content_filter_rate": 1.0}, ContentFilterError, "1301"),
    ({"context_window": 5}, ContextTooLongError, "1261"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("settings", "error", "code"), FAILURES,
                         ids=[f[1].__name__ + "-" + f[2] for f in FAILURES])
async def test_each_failure_kind_maps_to_its_error(settings: dict[str, Any], error: type,
                                                   code: str, stream: bool) -> None:
    async with serving(**settings) as server, backend_for(server) as backend:
        with pytest.raises(error) as caught:
            if stream:
                await collect(backend, request())
            else:
                await backend.complete(request())
        stats = server.backend.stats()
    assert caught.value.code == code and caught.value.retryable == error.retryable
    assert stats.in_flight == 0 and stats.calls == 1  # one HTTP call: the SDK retried nothing


async def test_a_429_carries_retry_after_and_the_rate_limit_headers() -> None:
    async with serving(rpm=1.0) as server, backend_for(server) as backend:
        await backend.complete(request())
        with pytest.raises(RateLimitError) as caught:
            await backend.complete(request(task_id="t2"))
    assert caught.value.code == "1303"
    assert 59.0 < caught.value.retry_after <= 60.0  # one request a minute: the bucket refills
    limits = backend.rate_limits  # the 429's headers, as the backend last saw them
    assert limits is not None and limits.limit_requests == 1 and limits.limit_concurrency is None
    assert limits.retry_after_s == caught.value.retry_after
    assert limits.reset_requests_s == pytest.approx(caught.value.retry_after, abs=0.001)


async def test_a_blocked_prompt_is_a_content_filter_error() -> None:
    async with serving() as server, backend_for(server) as backend:
        with pytest.raises(ContentFilterError, match="1301"):
            await backend.complete(request(message="please [BLOCK] this"))


async def test_a_cut_stream_keeps_its_partial_text() -> None:
    received = []
    async with serving(stream_break_rate=1.0) as server, backend_for(server) as backend:
        for n in range(6):  # the simulator breaks each stream at a random token
            got: list[StreamChunk] = []
            with pytest.raises(StreamInterruptedError) as caught:
                async for chunk in backend.stream(request(task_id=f"cut-{n}")):
                    got.append(chunk)
            exc, record = caught.value, server.records[-1]
            assert exc.retryable and record.outcome == "cut" and "connection" in exc.message
            assert exc.partial_text == "".join(c.text for c in got)
            assert exc.chunks_received == len(got) == record.chunks
            received.append(len(got))
    assert max(received) > 3  # some streams broke well after their first chunks


async def test_a_cut_json_answer_is_a_retryable_connection_error() -> None:
    async with serving(stream_break_rate=1.0) as server, backend_for(server) as backend:
        with pytest.raises(ServerError) as caught:
            await backend.complete(request())
    assert caught.value.retryable and caught.value.code == "connection"


async def test_the_sdk_timeout_is_a_retryable_timeout() -> None:
    async with serving(hang_rate=1.0) as server, backend_for(server, timeout_s=0.2) as backend:
        with pytest.raises(AITimeoutError):
            await backend.complete(request())
        await server.wait_for(lambda: server.backend.stats().in_flight == 0)
    assert server.records[-1].outcome == "disconnected"  # the server saw the client go


async def test_no_server_is_a_retryable_connection_error() -> None:
    server = SimServer()
    server.bind().close()  # a free port that nobody serves now
    async with backend_for(server) as backend:
        with pytest.raises(ServerError) as caught:
            await backend.complete(request())
    assert caught.value.retryable and caught.value.code == "connection"


async def test_a_rejected_key_is_permanent_and_never_printed() -> None:
    secret = "sk-proj-DoNotPrintMe0123456789"
    async with serving(api_key="the-right-key") as server, \
            backend_for(server, api_key=secret) as backend:
        with pytest.raises(ProviderAuthError) as caught:
            await backend.complete(request())
    exc = caught.value
    assert not exc.retryable and exc.status == 401 and "check" in exc.message
    assert secret not in str(exc) and secret not in str(exc.to_record())
    assert secret not in repr(backend.settings)


async def test_an_unknown_4xx_is_permanent_and_says_what_the_provider_said() -> None:
    async with serving() as server, backend_for(server, model="gpt-nope") as backend:
        with pytest.raises(BadRequestError) as caught:
            await backend.complete(request())
    exc = caught.value
    assert not exc.retryable and exc.status == 404 and exc.code == "model_not_found"
    assert "gpt-nope" in exc.message and "does not exist" in exc.message


async def test_a_bad_request_data_fails_before_any_call() -> None:
    async with serving() as server, backend_for(server) as backend:
        with pytest.raises(BadRequestError, match="max_tokens"):
            await backend.complete(request(max_tokens=0))
        with pytest.raises(BadRequestError, match="history"):
            await backend.complete(request(history=[{"role": "robot", "content": "x"}]))
    assert server.backend.stats().calls == 0


async def test_cancelling_a_json_call_closes_the_connection() -> None:
    async with serving(hang_rate=1.0) as server, backend_for(server) as backend:
        call = asyncio.create_task(backend.complete(request()))
        await server.wait_for(lambda: server.backend.stats().in_flight == 1)
        call.cancel()
        await server.wait_for(lambda: server.records[-1].outcome == "disconnected")
        stats = server.backend.stats()
    assert call.cancelled() and stats.cancelled == 1 and stats.in_flight == 0


async def test_closing_a_stream_closes_the_connection_at_once() -> None:
    async with serving(output_tps_p50=20.0, simulate_latency=True, ttft_p50_s=0.01,
                       ttft_p99_s=0.02) as server, backend_for(server) as backend:
        stream = backend.stream(request())
        first = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        await server.wait_for(lambda: server.records[-1].outcome == "disconnected")
        stats = server.backend.stats()
    assert first.index == 0 and server.records[-1].chunks >= 1
    assert stats.cancelled == 1 and stats.in_flight == 0 and stats.completed == 0
