"""Provider answers mapped onto the package's error tree (pure: no SDK, no network), and
chat requests and results built from the package's three request types."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import pytest

from chatroom_async import (
    AIRequest,
    BadRequestError,
    ContentFilterError,
    ContextTooLongError,
    OverloadedError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from chatroom_async.providers.errors import (
    ProviderAuthError,
    QuotaExceededError,
    error_fields,
    finish_error,
    redact,
    retry_after_s,
    status_error,
    stream_error,
)
from chatroom_async.providers.mapping import build_result, chat_messages, key_points
from chatroom_async.providers.ratelimits import RateLimits, duration_s, read_rate_limits


def headers(**values: str) -> Callable[[str], str | None]:
    lowered = {k.replace("_", "-"): v for k, v in values.items()}
    return lowered.get


def openai_body(message: str, code: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": "x", "param": None, "code": code}}


@pytest.mark.parametrize(("status", "body", "error", "retryable"), [
    (429, openai_body("Rate limit reached", "rate_limit_exceeded"), RateLimitError, True),
    (429, openai_body("You exceeded your current quota", "insufficient_quota"),
     QuotaExceededError, False),
    (429, {"error": {"code": "1113", "message": "您的账户已欠费"}}, QuotaExceededError, False),
    (429, {"error": {"code": "1302", "message": "并发数过高"}}, RateLimitError, True),
    (503, openai_body("The engine is currently overloaded"), OverloadedError, True),
    (529, "overloaded", OverloadedError, True),
    (500, {"error": {"code": "1305", "message": "访问量过大"}}, OverloadedError, True),
    (429, {"error": {"code": "1305", "message": "访问量过大"}}, OverloadedError, True),
    (500, openai_body("internal"), ServerError, True),
    (502, "<html>bad gateway</html>", ServerError, True),
    (408, openai_body("request timeout"), ServerError, True),
    (401, openai_body("Incorrect API key provided: sk-abc***xyz", "invalid_api_key"),
     ProviderAuthError, False),
    (403, openai_body("not allowed for this model"), ProviderAuthError, False),
    (400, {"error": {"code": "1301", "message": "敏感内容"}}, ContentFilterError, False),
    (400, openai_body("policy", "content_policy_violation"), ContentFilterError, False),
    (400, {"error": {"code": "1261", "message": "Prompt 超长"}}, ContextTooLongError, False),
    (400, openai_body("This model's maximum context length is 8192 tokens"),
     ContextTooLongError, False),  # vLLM and DeepSeek say it in words only
    (422, openai_body("unknown field 'foo'"), BadRequestError, False),
    (404, openai_body("The model `x` does not exist", "model_not_found"), BadRequestError,
     False),
])
def test_status_errors_map_onto_the_tree(status: int, body: object, error: type,
                                         retryable: bool) -> None:
    mapped = status_error(status, body, headers())
    assert type(mapped) is error and mapped.retryable is retryable
    assert mapped.status == status


def test_an_unknown_4xx_says_what_the_provider_said() -> None:
    mapped = status_error(418, openai_body("I'm a teapot", "teapot"), headers())
    assert "418 I'm a teapot (code teapot)" in mapped.message and mapped.code == "teapot"


def test_a_rejected_key_message_names_the_fix_and_hides_the_key() -> None:
    key = "sk-live-0123456789abcdef"
    mapped = status_error(401, openai_body(f"Incorrect API key provided: {key}"), headers(),
                          api_key=key)
    assert "check OPENAI_API_KEY" in mapped.message and key not in mapped.message
    zhipu = "0123456789abcdef0123456789abcdef.AbCdEfGh12345678"
    assert redact(f"key sk-abcdef123, {zhipu}; key-value", None) == "key ***, ***; key-value"
    assert redact("simulated overload", "sim") == "simulated overload"  # no real secret


@pytest.mark.parametrize(("given", "seconds"), [
    ({"retry_after": "7"}, 7.0),
    ({"retry_after": "2.5"}, 2.5),
    ({"retry_after_ms": "400", "retry_after": "1"}, 0.4),  # the precise one wins
    ({"retry_after": "soon"}, None),
    ({}, None),
])
def test_retry_after_headers(given: dict[str, str], seconds: float | None) -> None:
    assert retry_after_s(headers(**given)) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_s(headers(retry_after=date), now=now) == pytest.approx(30.0)
    mapped = status_error(429, openai_body("slow down"), headers(retry_after="3"))
    assert isinstance(mapped, RateLimitError) and mapped.retry_after == 3.0


@pytest.mark.parametrize(("reason", "error"), [
    ("stop", None), ("length", None), ("tool_calls", None),
    ("content_filter", ContentFilterError), ("sensitive", ContentFilterError),
    ("network_error", StreamInterruptedError), (None, StreamInterruptedError),
])
def test_finish_reasons(reason: str | None, error: type | None) -> None:
    mapped = finish_error(reason, "部分", 2)
    assert (type(mapped) if mapped is not None else None) is error
    if isinstance(mapped, StreamInterruptedError):
        assert mapped.partial_text == "部分" and mapped.chunks_received == 2


def test_error_events_inside_a_stream() -> None:
    cut = stream_error({"message": "upstream reset"}, "半句", 3)
    assert isinstance(cut, StreamInterruptedError) and cut.partial_text == "半句"
    assert isinstance(stream_error({"code": "1301", "message": "x"}, "", 0), ContentFilterError)
    assert isinstance(stream_error({"code": "1302", "message": "x"}, "", 0), RateLimitError)
    assert error_fields(b"plain text") == (None, "plain text")


def req(request_type: str, **data: object) -> AIRequest:
    return AIRequest("t", 1, 1, request_type, data)


def test_chat_messages_for_each_request_type() -> None:
    chat = chat_messages(req("chat_completion", message="你好", history=[
        {"role": "user", "content": "早"}, {"role": "assistant", "content": "早上好"}]),
        system_prompt="你是助教")
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert chat[-1]["content"] == "你好"
    summary = chat_messages(req("content_summary", content="长文"))
    assert summary[0]["role"] == "system" and summary[1] == {"role": "user", "content": "长文"}
    translation = chat_messages(req("translation", text="hi", target_language="zh",
                                    source_language="en"))
    assert "zh" in translation[0]["content"] and "en" in translation[0]["content"]
    with pytest.raises(BadRequestError):
        chat_messages(req("image_generation", prompt="x"))
    with pytest.raises(BadRequestError):
        chat_messages(req("translation", text="hi"))


def test_results_and_key_points() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    result = build_result(req("translation", text="你好", target_language="en"), "Hello",
                          usage, "m")
    assert result["source_language"] == "zh" and result["confidence"] is None
    assert result["tokens_used"] == 12
    bare = build_result(req("chat_completion", message="x"), "y", None, "m")
    assert bare["usage"] is None and bare["tokens_used"] is None
    assert key_points("第一句。第二句！Third one. Fourth? 第一句。") == ["第一句。", "第二句！",
                                                                      "Third one."]


@pytest.mark.parametrize(("raw", "seconds"), [
    ("1s", 1.0), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("20ms", 0.02), ("0.5", 0.5),
    ("7", 7.0), ("soon", None), ("1s later", None), ("-1", None), (None, None),
])
def test_rate_limit_durations(raw: str | None, seconds: float | None) -> None:
    assert duration_s(raw) == (pytest.approx(seconds) if seconds is not None else None)


def test_rate_limit_snapshots() -> None:
    assert read_rate_limits(headers()) is None
    got = read_rate_limits(headers(x_ratelimit_limit_concurrency="5"), retry_after_s=1.5)
    assert got == RateLimits(limit_concurrency=5, retry_after_s=1.5)
