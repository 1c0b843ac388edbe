"""sim-server as any OpenAI client sees it: the raw `openai` SDK against the command-line
server, the status codes, headers and error bodies of a real provider, and its bad input."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from chatroom_async import OverloadedError, RateLimitError  # noqa: E402
from chatroom_async.cli import main as cli_main  # noqa: E402
from chatroom_async.providers import SimServer  # noqa: E402
from tests.providers.helpers import MODEL, backend_for, request, serving  # noqa: E402

HELLO = [{"role": "user", "content": "你好"}]


@pytest.fixture
def cli_server() -> Iterator[str]:
    """`chatroom-async sim-server` in its own process on a free port; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatroom_async", "sim-server", "--port", "0", "--profile",
         "instant", "--api-key", "sim-key", "--log-level", "warning", "--set",
         'blocked_terms=["坏词"]'], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once the socket listens
    try:
        assert "serving http://127.0.0.1:" in line, line
        yield line.split("serving ")[1].split()[0]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.stdout.close()
        assert proc.wait(timeout=30) == 0  # Ctrl-C is a clean stop


def test_the_raw_openai_sdk_works_against_the_command_line_server(cli_server: str) -> None:
    with openai.OpenAI(base_url=cli_server, api_key="sim-key", max_retries=0) as client:
        assert [m.id for m in client.models.list()] == [MODEL]
        answer = client.chat.completions.create(model=MODEL, messages=HELLO)
        assert answer.choices[0].message.content and answer.choices[0].finish_reason == "stop"
        assert answer.usage is not None and answer.usage.total_tokens > 0
        events = list(client.chat.completions.create(
            model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}))
        text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
        assert len(events) > 5 and text and events[-1].usage is not None
        assert [e.choices[0].finish_reason for e in events if e.choices][-1] == "stop"
        with pytest.raises(openai.BadRequestError) as blocked:
            client.chat.completions.create(model=MODEL, messages=[
                {"role": "user", "content": "一个坏词"}])
        assert blocked.value.code == "1301"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-nope", messages=HELLO)
    with openai.OpenAI(base_url=cli_server, api_key="wrong", max_retries=0) as client, \
            pytest.raises(openai.AuthenticationError) as denied:
        client.chat.completions.create(model=MODEL, messages=HELLO)
    assert denied.value.code == "invalid_api_key"


async def raw_error(server: SimServer, **create: Any) -> Any:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k",
                                  max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(**{"model": MODEL, "messages": HELLO,
                                                    **create})
    return caught.value


async def test_a_frequency_429_has_retry_after_and_rate_limit_headers() -> None:
    async with serving(rpm=1.0, tpm=100_000.0) as server:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k",
                                      max_retries=0) as client:
            ok = await client.chat.completions.with_raw_response.create(model=MODEL,
                                                                        messages=HELLO)
        error = await raw_error(server)
    assert ok.headers["x-ratelimit-limit-requests"] == "1"
    assert ok.headers["x-ratelimit-limit-tokens"] == "100000"
    headers = error.response.headers
    assert error.status_code == 429 and error.code == "1303"
    assert error.body["type"] == "rate_limit_exceeded" and "1303" in error.body["message"]
    assert 59 <= int(headers["retry-after"]) <= 60 and 59_000 < int(headers["retry-after-ms"])
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert headers["x-request-id"] == "req-2"


async def test_the_concurrency_limit_is_a_429_without_retry_after() -> None:
    slow = {"simulate_latency": True, "ttft_p50_s": 0.01, "ttft_p99_s": 0.02,
            "output_tps_p50": 10.0, "output_tokens_p50": 200.0, "max_concurrency": 1}
    async with serving(**slow) as server, backend_for(server) as backend:
        holder = backend.stream(request())
        await anext(holder)  # holds the only slot
        with pytest.raises(RateLimitError) as caught:
            await backend.complete(request(task_id="t2"))
        await holder.aclose()  # type: ignore[attr-defined]
    assert caught.value.code == "1302" and caught.value.retry_after is None  # Zhipu sends none
    assert server.records[1].status == 429


@pytest.mark.parametrize(("body", "status", "param"), [
    (b"not json", 400, None),
    (b"[1, 2]", 400, None),
    (json.dumps({"messages": HELLO}).encode(), 400, "model"),
    (json.dumps({"model": MODEL, "messages": []}).encode(), 400, "messages"),
    (json.dumps({"model": MODEL, "messages": [{"role": "user"}]}).encode(), 400, "messages[0]"),
    (json.dumps({"model": MODEL, "messages": HELLO, "max_tokens": 0}).encode(), 400, None),
])
async def test_bad_input_gets_a_clear_400(body: bytes, status: int, param: str | None) -> None:
    async with serving() as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nConnection: close\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        raw = await reader.read()
        writer.close()
        await writer.wait_closed()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode())
    error = json.loads(payload)["error"]
    assert error["message"] and error["param"] == param and error["type"]


async def test_stats_are_served_as_json() -> None:
    async with serving() as server, backend_for(server) as backend:
        await backend.complete(request())
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k") as client:
            stats = (await client.get(f"http://{server.host}:{server.port}/sim/stats",
                                      cast_to=object))
    assert stats["backend"]["completed"] == 1 and stats["server"]["status_200"] == 1


def test_it_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        SimServer().bind("0.0.0.0")


@pytest.mark.parametrize("argv", [["--set", "no_such_knob=1"], ["--host", "0.0.0.0"],
                                  ["--profile", "nope"], ["--set", "novalue"]])
def test_bad_command_lines_fail_with_one_line(argv: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main(["sim-server", "--port", "0", *argv])
    err = capsys.readouterr().err.strip()
    assert caught.value.code == 2 and err.startswith("chatroom-async: error:")
    assert len(err.splitlines()) == 1


async def test_stopping_the_server_answers_the_calls_in_progress() -> None:
    async with serving(hang_rate=1.0) as server, backend_for(server) as backend:
        call = asyncio.create_task(backend.complete(request()))
        await server.wait_for(
            lambda: bool(server.records) and server.records[-1].outcome == "running")
        await server.stop()
        with pytest.raises(OverloadedError, match="shutting down"):
            await call
    assert server.records[-1].outcome == "stopped"
    assert server.backend.stats().cancelled == 1
