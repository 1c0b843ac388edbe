"""What a provider's answer means in the package's error tree: status codes, error codes,
headers and finish reasons mapped onto `chatroom_async`'s retryable and permanent errors.

Pure: it reads a status, a decoded error body, a header getter and a message; the SDK
adapter in `openai_backend` hands these in. Two errors are added under `PermanentAIError`:
a rejected key and an exhausted quota, which no retry can fix.

    status / code                           error                      retried
    429 + Retry-After(-ms)                  RateLimitError(retry_after) yes
    429 insufficient_quota / 1113           QuotaExceededError         no
    503, 529, code 1305 ("overloaded")      OverloadedError            yes
    other 5xx, 408, 409                     ServerError                yes
    401, 403                                ProviderAuthError          no
    code 1301, content_filter / sensitive   ContentFilterError         no
    code 1261, context_length_exceeded      ContextTooLongError        no
    any other 4xx                           BadRequestError            no
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping

from chatroom_async import (
    AIError,
    BadRequestError,
    ContentFilterError,
    ContextTooLongError,
    OverloadedError,
    PermanentAIError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)

HeaderGetter = Callable[[str], "str | None"]

_FILTER_CODES = frozenset({"1301", "content_filter", "content_policy_violation"})
_CONTEXT_CODES = frozenset({"1261", "context_length_exceeded", "string_above_max_length"})
_QUOTA_CODES = frozenset({"insufficient_quota", "1113"})
_OVERLOAD_CODES = frozenset({"1305", "overloaded", "overloaded_error", "engine_overloaded"})
_CONTEXT_WORDS = re.compile(r"context length|context window|maximum context|too many tokens"
                            r"|prompt is too long|超长", re.I)
# OpenAI/DeepSeek-style "sk-..." keys, and Zhipu's "<32 hex>.<secret>" keys.
_KEYLIKE = re.compile(r"\bsk-[A-Za-z0-9*_.\-]{4,}|\b[0-9a-f]{32}\.[A-Za-z0-9]{8,}")


class ProviderAuthError(PermanentAIError):
    """The provider rejected the API key or its permissions (401/403): fix the key."""

    status = 401


class QuotaExceededError(PermanentAIError):
    """The account has no quota or balance left (429 insufficient_quota, Zhipu 1113)."""

    status = 429


def redact(text: str, secret: str | None) -> str:
    """`text` with the secret and anything shaped like an API key replaced by `***`.

    A "secret" under 8 characters (a placeholder such as "sim" for a local server) is left
    alone: replacing it would mangle ordinary words.
    """
    if secret and len(secret) >= 8:
        text = text.replace(secret, "***")
    return _KEYLIKE.sub("***", text)


def error_fields(body: object) -> tuple[str | None, str]:
    """(code, message) from an error body in OpenAI's or Zhipu's shape, or plain text."""
    error = body.get("error", body) if isinstance(body, Mapping) else body
    if isinstance(error, Mapping):
        code = error.get("code") or error.get("type")
        message = error.get("message") or error.get("msg") or ""
        return (str(code) if code is not None else None), str(message)
    if isinstance(error, (str, bytes)):
        text = error.decode(errors="replace") if isinstance(error, bytes) else error
        return None, text[:500]
    return None, ""


def retry_after_s(header: HeaderGetter, now: float | None = None) -> float | None:
    """Seconds asked for by `retry-after-ms`, else `retry-after` (seconds or an HTTP date)."""
    raw_ms = header("retry-after-ms")
    if raw_ms is not None:
        value = _number(raw_ms)
        if value is not None:
            return value / 1000.0
    raw = header("retry-after")
    if raw is None:
        return None
    value = _number(raw)
    if value is not None:
        return value
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    wait = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
    return max(0.0, wait)


def status_error(status: int, body: object, header: HeaderGetter, *,
                 api_key: str | None = None) -> AIError:
    """The package error for an HTTP error answer (status >= 400)."""
    code, message = error_fields(body)
    message = redact(message, api_key) or f"HTTP {status}"
    said = f"{status} {message}" + (f" (code {code})" if code else "")
    if status in (401, 403):
        return ProviderAuthError(
            f"the provider rejected the API key ({status}): check OPENAI_API_KEY / --api-key "
            f"and the key's permissions for this model; it said: {message}",
            status=status, code=code)
    if code in _FILTER_CODES:
        return ContentFilterError(said, code=code, status=status)
    if code in _CONTEXT_CODES or (status in (400, 413, 422) and _CONTEXT_WORDS.search(message)):
        return ContextTooLongError(said, code=code, status=status)
    if status in (503, 529) or code in _OVERLOAD_CODES:  # Zhipu sends 1305 with a 429 too
        return OverloadedError(said, code=code, status=status,
                               retry_after=retry_after_s(header))
    if status == 429:
        if code in _QUOTA_CODES:
            return QuotaExceededError(f"quota exhausted: {said}; check the plan or balance",
                                      code=code, status=status)
        return RateLimitError(said, code=code, status=status, retry_after=retry_after_s(header))
    if status >= 500 or status in (408, 409):
        return ServerError(said, code=code or str(status), status=status)
    return BadRequestError(f"the provider refused the request: {said}", code=code,
                           status=status)


def stream_error(body: object, partial: str, chunks: int, *,
                 api_key: str | None = None) -> AIError:
    """The package error for an error event inside a stream (no HTTP status)."""
    code, message = error_fields(body)
    message = redact(message, api_key) or "error event in the stream"
    if code in _FILTER_CODES:
        return ContentFilterError(message, code=code)
    if code in _CONTEXT_CODES:
        return ContextTooLongError(message, code=code)
    if code in _QUOTA_CODES or code == "1302" or code == "1303":
        return RateLimitError(message, code=code)
    return StreamInterruptedError(f"the stream ended with an error after {chunks} chunks: "
                                  f"{message}", partial_text=partial, chunks_received=chunks,
                                  code=code)


def finish_error(finish_reason: str | None, partial: str, chunks: int) -> AIError | None:
    """The error an answer's finish reason stands for, or None for a finished answer.

    "content_filter" (OpenAI) and "sensitive" (Zhipu) mean the provider cut it:
    ContentFilterError. "network_error" (Zhipu), or no finish reason at all, mean the
    answer broke off: StreamInterruptedError with what arrived. Any other reason ("stop",
    "length", "tool_calls"...) finishes the answer.
    """
    if finish_reason in ("content_filter", "sensitive"):
        return ContentFilterError(f"the provider filtered the answer (finish_reason "
                                  f"{finish_reason}) after {chunks} chunks", code="1301")
    if finish_reason not in (None, "", "network_error"):
        return None
    what = f"finish_reason {finish_reason}" if finish_reason else "no finish_reason"
    return StreamInterruptedError(f"the answer broke off after {chunks} chunks ({what})",
                                  partial_text=partial, chunks_received=chunks)


def _number(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None

