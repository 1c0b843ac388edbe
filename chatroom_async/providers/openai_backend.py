"""`OpenAIBackend`: the package's AI backend on any OpenAI-compatible chat completions API
(Zhipu GLM, OpenAI, DeepSeek, vLLM, Ollama, sim-server), through the official `openai` SDK.

It owns one call's translation: request -> chat messages -> the SDK -> a result dict or a
stream of `StreamChunk`s, and the SDK's exceptions -> the package's error tree. The SDK's
own retries are off (`max_retries=0`): the processor decides what to retry, when (backoff,
`Retry-After`) and how often. Needs the `provider` extra: `pip install chatroom_async[provider]`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, Self, cast

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from chatroom_async import (
    AIError,
    AIRequest,
    AITimeoutError,
    BadRequestError,
    ServerError,
    StreamChunk,
)

from .config import OpenAISettings
from .errors import finish_error, retry_after_s, status_error, stream_error
from .mapping import (
    DEFAULT_CHARGED_OUTPUT_TOKENS,
    build_result,
    chat_messages,
    estimate_tokens,
    request_options,
)
from .ratelimits import RateLimits, read_rate_limits


class OpenAIBackend:
    """An AI backend that calls an OpenAI-compatible endpoint.

    Args:
        settings: where and how to call (see `OpenAISettings`); or give its fields as
            keyword arguments instead.
        client: an `AsyncOpenAI` to use as is (its retries are then yours to turn off);
            by default one is made from the settings, with `max_retries=0`.
        on_rate_limits: called with the `RateLimits` of every answer that carries
            `x-ratelimit-*` or `Retry-After` headers (a limiter shared by workers can pace
            itself by them); it must be quick and must not raise. The latest is also kept
            in `rate_limits`.
        **fields: `OpenAISettings` fields, when `settings` is not given.

    Raises:
        ProviderConfigError: no model, no API key, or a malformed setting.

    Use `async with OpenAIBackend(...) as backend:` or call `aclose()` when done: the
    backend holds a pool of HTTP connections.
    """

    def __init__(self, settings: OpenAISettings | None = None, *,
                 client: AsyncOpenAI | None = None,
                 on_rate_limits: Callable[[RateLimits], None] | None = None,
                 **fields: Any) -> None:
        self.settings = settings if settings is not None else OpenAISettings(**fields)
        s = self.settings
        self._owns_client = client is None
        self._client = client if client is not None else AsyncOpenAI(
            api_key=s.require_key(), base_url=s.base_url, max_retries=0,
            timeout=openai.Timeout(s.timeout_s, connect=s.connect_timeout_s),
            default_headers=dict(s.extra_headers) if s.extra_headers else None)
        self.calls = 0
        self.rate_limits: RateLimits | None = None
        self.on_rate_limits = on_rate_limits

    @classmethod
    def from_env(cls, **overrides: Any) -> OpenAIBackend:
        """A backend configured from the environment (see `OpenAISettings.from_env`)."""
        return cls(OpenAISettings.from_env(**overrides))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections (a client passed in is left to its owner)."""
        if self._owns_client:
            await self._client.close()

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        """One non-streamed call; the result dict, or an AIError (see `providers.errors`)."""
        kwargs = self._call_kwargs(request, stream=False)
        self.calls += 1
        try:
            raw = await self._client.chat.completions.with_raw_response.create(**kwargs)
            self._saw(raw.headers.get)
            completion = cast(ChatCompletion, await _parsed(raw))
        except openai.OpenAIError as exc:
            raise self._mapped(exc) from None
        if not completion.choices:
            raise ServerError("the provider answered with no choices", code="no_choices")
        choice = completion.choices[0]
        text = choice.message.content or ""
        error = finish_error(choice.finish_reason, text, 1)
        if error is not None:
            raise error
        return build_result(request, text, _usage(completion.usage),
                            completion.model or self.settings.model)

    async def stream(self, request: AIRequest) -> AsyncIterator[StreamChunk]:
        """The answer chunk by chunk; the last chunk has finish_reason, usage and result.

        Closing the iterator (or cancelling the task that reads it) closes the HTTP
        response at once, so the provider sees the client go and stops generating.
        """
        kwargs = self._call_kwargs(request, stream=True)
        self.calls += 1
        try:
            raw = await self._client.chat.completions.with_raw_response.create(**kwargs)
            self._saw(raw.headers.get)
            sdk_stream = cast(AsyncStream[ChatCompletionChunk], await _parsed(raw))
        except openai.OpenAIError as exc:
            raise self._mapped(exc) from None
        parts: list[str] = []
        tail, finish, usage, model = "", None, None, self.settings.model
        try:
            async with sdk_stream:  # the response closes on every way out, cancel included
                async for event in sdk_stream:
                    usage = _usage(event.usage) or usage
                    model = event.model or model
                    if not event.choices:
                        continue
                    choice = event.choices[0]
                    text = (choice.delta.content if choice.delta else None) or ""
                    if choice.finish_reason is not None:  # held back for the final chunk
                        finish, tail = choice.finish_reason, tail + text
                    elif text:
                        parts.append(text)
                        yield StreamChunk(len(parts) - 1, text)
        except openai.OpenAIError as exc:
            raise self._mapped(exc, partial="".join(parts) + tail, chunks=len(parts)) from None
        partial = "".join(parts) + tail
        error = finish_error(finish, partial, len(parts))
        if error is not None:
            raise error
        yield StreamChunk(len(parts), tail, finish_reason=finish, usage=usage,
                          result=build_result(request, partial, usage, model))

    def tokens_charged(self, request: AIRequest) -> int:
        """What a call counts against a tokens-per-minute limit before it runs (read by the
        processor's shared limiter): the prompt, estimated, plus the most the answer may
        take (its max_tokens, else 1024). A request that cannot be sent counts 1."""
        try:
            messages = chat_messages(request, self.settings.system_prompt)
            options = request_options(request.request_data, self.settings.max_tokens, None)
        except BadRequestError:
            return 1
        cap: int = options.get("max_tokens", DEFAULT_CHARGED_OUTPUT_TOKENS)
        return estimate_tokens(messages) + cap

    def _call_kwargs(self, request: AIRequest, *, stream: bool) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model, "messages": chat_messages(request, s.system_prompt),
            **request_options(request.request_data, s.max_tokens, s.temperature)}
        if stream:
            kwargs["stream"] = True
            if s.stream_usage:
                kwargs["stream_options"] = {"include_usage": True}
        if s.extra_body:
            kwargs["extra_body"] = dict(s.extra_body)
        if s.task_headers:
            kwargs["extra_headers"] = {"X-Chatroom-Task-Id": request.task_id,
                                       "X-Chatroom-Attempt": str(request.attempt)}
        return kwargs

    def _saw(self, header: Callable[[str], str | None]) -> None:
        """Keep (and announce) the rate-limit headers of an answer, if it has any."""
        limits = read_rate_limits(header, retry_after_s(header))
        if limits is not None:
            self.rate_limits = limits
            if self.on_rate_limits is not None:
                self.on_rate_limits(limits)

    def _mapped(self, exc: openai.OpenAIError, *, partial: str | None = None,
                chunks: int = 0) -> AIError:
        """The package error for an SDK exception; `partial` is set inside a stream."""
        key = self.settings.api_key
        if isinstance(exc, openai.APIStatusError):
            self._saw(exc.response.headers.get)
            return status_error(exc.status_code, exc.body, exc.response.headers.get,
                                api_key=key)
        if partial is not None and isinstance(exc, openai.APIError):
            if isinstance(exc, openai.APIConnectionError):
                return stream_error({"message": f"connection lost: {_cause(exc)}"}, partial,
                                    chunks, api_key=key)
            return stream_error(exc.body if exc.body is not None else str(exc), partial,
                                chunks, api_key=key)
        if isinstance(exc, openai.APITimeoutError):
            return AITimeoutError(f"the provider did not answer within "
                                  f"{self.settings.timeout_s:g} s ({_cause(exc)})")
        if isinstance(exc, openai.APIConnectionError):
            return ServerError(f"could not reach the provider: {_cause(exc)}",
                               code="connection", status=502)
        if isinstance(exc, openai.APIError) and exc.body is not None:
            return stream_error(exc.body, "", 0, api_key=key)
        return ServerError(f"{type(exc).__name__}: {exc}", code="sdk")


async def _parsed(raw: Any) -> Any:
    """The parsed body of a raw response: `parse()` is plain in the SDK's raw-response
    wrapper and a coroutine in its streaming one."""
    parsed = raw.parse()
    return await parsed if inspect.isawaitable(parsed) else parsed


def _usage(usage: Any) -> dict[str, int] | None:
    """The three token counts of an SDK usage object, or None."""
    if usage is None:
        return None
    counts = {name: getattr(usage, name, None)
              for name in ("prompt_tokens", "completion_tokens", "total_tokens")}
    if not all(isinstance(v, int) for v in counts.values()):
        return None
    return {name: int(value) for name, value in counts.items()}  # type: ignore[arg-type]


def _cause(exc: BaseException) -> str:
    """The underlying reason of a connection error ("peer closed connection..."), short."""
    cause = exc.__cause__ or exc.__context__
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return text[:300]

