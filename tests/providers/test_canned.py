"""OpenAIBackend against canned HTTP answers of real providers that sim-server never gives:
a finish reason that says the answer was filtered (OpenAI's content_filter, Zhipu's
sensitive), an error event inside a stream, and a 401 that echoes part of the key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

pytest.importorskip("openai")

from chatroom_async import ContentFilterError, StreamInterruptedError  # noqa: E402
from chatroom_async.providers import OpenAIBackend, ProviderAuthError  # noqa: E402
from chatroom_async.providers.ratelimits import RateLimits  # noqa: E402
from tests.providers.helpers import MODEL, request  # noqa: E402


@asynccontextmanager
async def canned(status: int, content_type: str, body: bytes,
                 headers: str = "") -> AsyncIterator[str]:
    """A loopback HTTP server that answers every request with the same bytes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: "
                     f"{len(body)}\r\nConnection: close\r\n{headers}\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        await server.wait_closed()


def sse(*events: object) -> bytes:
    return b"".join(f"data: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in events)


def chunk(text: str, finish: str | None = None) -> dict[str, object]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


@pytest.mark.parametrize("reason", ["content_filter", "sensitive"])
async def test_a_filtered_stream_is_a_content_filter_error(reason: str) -> None:
    body = sse(chunk("一些"), chunk("文字"), chunk("", reason)) + b"data: [DONE]\n\n"
    async with canned(200, "text/event-stream", body) as url, \
            OpenAIBackend(model=MODEL, base_url=url, api_key="k") as backend:
        with pytest.raises(ContentFilterError, match=reason):
            [c async for c in backend.stream(request())]


async def test_a_filtered_json_answer_is_a_content_filter_error() -> None:
    body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": MODEL,
                       "choices": [{"index": 0, "finish_reason": "content_filter",
                                    "message": {"role": "assistant", "content": ""}}]})
    async with canned(200, "application/json", body.encode()) as url, \
            OpenAIBackend(model=MODEL, base_url=url, api_key="k") as backend:
        with pytest.raises(ContentFilterError):
            await backend.complete(request())


async def test_an_error_event_mid_stream_keeps_the_partial_text() -> None:
    body = sse(chunk("前半"), chunk("句"), {"error": {"message": "upstream reset",
                                                     "code": "1234"}})
    async with canned(200, "text/event-stream", body) as url, \
            OpenAIBackend(model=MODEL, base_url=url, api_key="k") as backend:
        got = []
        with pytest.raises(StreamInterruptedError) as caught:
            async for c in backend.stream(request()):
                got.append(c.text)
    assert caught.value.partial_text == "前半句" == "".join(got)
    assert "upstream reset" in caught.value.message and caught.value.retryable


async def test_a_stream_that_ends_without_a_finish_reason_is_interrupted() -> None:
    async with canned(200, "text/event-stream", sse(chunk("半"))) as url, \
            OpenAIBackend(model=MODEL, base_url=url, api_key="k") as backend:
        with pytest.raises(StreamInterruptedError) as caught:
            [c async for c in backend.stream(request())]
    assert caught.value.partial_text == "半"


async def test_a_401_that_echoes_the_key_never_shows_it() -> None:
    key = "sk-proj-abcdefghijklmnop1234"
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}",
                                 "type": "invalid_request_error", "code": "invalid_api_key"}})
    async with canned(401, "application/json", body.encode()) as url, \
            OpenAIBackend(model=MODEL, base_url=url, api_key=key) as backend:
        with pytest.raises(ProviderAuthError) as caught:
            await backend.complete(request())
    assert key not in str(caught.value) and "Incorrect API key provided: ***" in str(
        caught.value)


async def test_the_rate_limit_headers_of_each_answer_are_kept_and_announced() -> None:
    body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": MODEL,
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "好"}}]})
    headers = ("x-ratelimit-limit-requests: 500\r\nx-ratelimit-remaining-requests: 499\r\n"
               "x-ratelimit-reset-requests: 120ms\r\nx-ratelimit-limit-tokens: 30000\r\n"
               "x-ratelimit-remaining-tokens: 29000\r\nx-ratelimit-reset-tokens: 2s\r\n")
    seen: list[RateLimits] = []
    async with canned(200, "application/json", body.encode(), headers) as url, \
            OpenAIBackend(model=MODEL, base_url=url, api_key="k",
                          on_rate_limits=seen.append) as backend:
        result = await backend.complete(request())
    assert result["response"] == "好" and result["usage"] is None
    assert seen == [backend.rate_limits] and backend.rate_limits == RateLimits(
        limit_requests=500, remaining_requests=499, reset_requests_s=0.12,
        limit_tokens=30000, remaining_tokens=29000, reset_tokens_s=2.0)
