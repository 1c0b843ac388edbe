"""What sim-server says on the wire, as a real provider says it: a chat request parsed into
the simulator's `AIRequest`, and answers, chunks and errors built as OpenAI-shaped JSON with
the status codes and headers of a rate-limited, sometimes overloaded API.

Pure: bytes and dicts in, bytes and dicts out; no sockets, no sleeping. The error bodies
carry Zhipu's numeric codes (the simulator is a glm-4-flash) in OpenAI's envelope:
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatroom_async import AIError, AIRequest, RateLimitError
from chatroom_async.simulated import SimSettings

#: The error `type` a client sees for each status (OpenAI's names).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               404: "not_found_error", 429: "rate_limit_exceeded", 500: "server_error",
               503: "overloaded_error", 504: "timeout_error"}


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One parsed chat request."""

    request: AIRequest
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None


class WireError(Exception):
    """An error answer: status, JSON body and extra headers."""

    def __init__(self, status: int, body: dict[str, Any],
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {body['error']['message']}")
        self.status, self.body, self.headers = status, body, headers


def error_body(status: int, message: str, code: str | None,
               param: str | None = None) -> dict[str, Any]:
    """The OpenAI-shaped error body."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "api_error"),
                      "param": param, "code": code}}


def parse_chat(raw: bytes, headers: Mapping[str, str], model: str,
               number: int) -> ChatCall:
    """Parse a `POST /v1/chat/completions` body into the simulator's request.

    The messages' text, joined, becomes a chat_completion "message" (what the simulator
    counts tokens of and answers in the language of); `max_tokens` (or
    `max_completion_tokens`) passes through. `X-Chatroom-Task-Id` / `X-Chatroom-Attempt`
    seed the outcome as in-process runs do; without them request `number` does.

    Raises:
        WireError: 400 for a malformed body, 404 for another model.
    """
    try:
        body = json.loads(raw)
    except ValueError:
        raise WireError(400, error_body(400, "the body is not valid JSON", "1210")) from None
    if not isinstance(body, dict):
        raise WireError(400, error_body(400, "the body must be a JSON object", "1210"))
    asked = body.get("model")
    if not isinstance(asked, str) or not asked:
        raise WireError(400, error_body(400, "model is required", "1210", "model"))
    if asked != model:
        raise WireError(404, error_body(
            404, f"The model `{asked}` does not exist; this server serves `{model}`",
            "model_not_found", "model"))
    text = _messages_text(body.get("messages"))
    data: dict[str, Any] = {"message": text}
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if cap is not None:
        data["max_tokens"] = cap
    task_id, attempt = call_ids(headers, number)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    request = AIRequest(task_id, attempt, 0, "chat_completion", data)
    return ChatCall(request, model, body.get("stream") is True, include_usage,
                    cap if isinstance(cap, int) else None)


def call_ids(headers: Mapping[str, str], number: int) -> tuple[str, int]:
    """(task_id, attempt) from the X-Chatroom-* headers, else ("req-<number>", 1)."""
    task_id = headers.get("x-chatroom-task-id") or f"req-{number}"
    try:
        attempt = max(1, int(headers.get("x-chatroom-attempt") or "1"))
    except ValueError:
        attempt = 1
    return task_id, attempt


def _messages_text(messages: object) -> str:
    if not isinstance(messages, list) or not messages:
        raise WireError(400, error_body(400, "messages must be a non-empty list", "1214",
                                        "messages"))
    texts = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise WireError(400, error_body(400, f"messages[{i}].content must be text",
                                            "1214", f"messages[{i}]"))
        texts.append(content)
    return "\n".join(texts)


def limit_headers(s: SimSettings) -> list[tuple[str, str]]:
    """The x-ratelimit-limit-* headers of the configured limits (sent on every answer)."""
    headers = []
    for name, value in (("requests", s.rpm), ("tokens", s.tpm),
                        ("concurrency", s.max_concurrency)):
        if value is not None:
            headers.append((f"x-ratelimit-limit-{name}", f"{value:g}"))
    return headers


def ai_error(exc: AIError, s: SimSettings) -> WireError:
    """The answer a provider gives for a call that failed before its first byte."""
    status = exc.status or 500
    headers: list[tuple[str, str]] = []
    if exc.retry_after is not None:
        headers += [("retry-after", str(max(1, math.ceil(exc.retry_after)))),
                    ("retry-after-ms", str(round(exc.retry_after * 1000)))]
    if isinstance(exc, RateLimitError) and exc.code == "1303" and exc.retry_after is not None:
        reset = f"{exc.retry_after:.3f}s"  # when the next call will be admitted
        headers += [(f"x-ratelimit-reset-{name}", reset) for name, value
                    in (("requests", s.rpm), ("tokens", s.tpm)) if value is not None]
    return WireError(status, error_body(status, exc.message, exc.code), tuple(headers))


def completion_body(call: ChatCall, result: Mapping[str, Any], number: int) -> dict[str, Any]:
    """A `chat.completion` object for a finished non-streamed answer.

    The finish reason is "length" when the answer used all of `max_tokens` (the simulator
    stops there), else "stop".
    """
    usage = dict(result["usage"])
    cap = call.max_tokens
    finish = "length" if cap is not None and usage["completion_tokens"] >= cap else "stop"
    return {"id": f"chatcmpl-{number}", "object": "chat.completion",
            "created": int(time.time()), "model": call.model,
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": result["response"]}}],
            "usage": usage}


def chunk_event(call: ChatCall, number: int, text: str, *, first: bool = False,
                finish_reason: str | None = None,
                usage: Mapping[str, int] | None = None) -> bytes:
    """One SSE event of a `chat.completion.chunk`; `usage` alone makes the usage chunk."""
    body: dict[str, Any] = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": call.model}
    if usage is not None:
        body["choices"], body["usage"] = [], dict(usage)
    else:
        delta = {"role": "assistant", "content": text} if first else {"content": text}
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                            "logprobs": None}]
    return sse(body)


def sse(body: dict[str, Any] | str) -> bytes:
    """One server-sent event carrying `body` (JSON, or a literal like "[DONE]")."""
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return f"data: {data}\n\n".encode()
