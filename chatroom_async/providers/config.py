"""How to reach an OpenAI-compatible provider: `OpenAISettings`, and the one place that reads
the provider's environment variables.

Plain values only: nothing here imports the SDK or opens a connection. The API key is kept
out of `repr()` and out of every message, so a settings object can be printed or logged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

#: Environment variables read by `OpenAISettings.from_env`, first match wins.
ENV_MODEL = ("CHATROOM_ASYNC_OPENAI_MODEL",)
ENV_BASE_URL = ("CHATROOM_ASYNC_OPENAI_BASE_URL", "OPENAI_BASE_URL")
ENV_API_KEY = ("CHATROOM_ASYNC_OPENAI_API_KEY", "OPENAI_API_KEY")


class ProviderConfigError(ValueError):
    """The provider's configuration is missing or malformed (the message names what)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenAISettings:
    """Where and how to call an OpenAI-compatible chat completions API.

    Attributes:
        model: the model name the provider knows ("glm-4-flash", "gpt-4o-mini",
            "deepseek-chat", "qwen2.5:7b"...).
        base_url: the API root ending in `/v1` (or the provider's equivalent, e.g.
            `https://open.bigmodel.cn/api/paas/v4`); None means OpenAI's.
        api_key: the secret; never shown by `repr()` or in errors.
        timeout_s: the SDK's own limit for one HTTP call; the task's timeout is usually the
            shorter one and ends the call first.
        connect_timeout_s: how long to wait for a TCP/TLS connection.
        max_tokens: the output cap sent when the request has no "max_tokens"; None: the
            provider's default.
        temperature: sent when set (a request's "temperature" wins).
        system_prompt: prepended to chat_completion requests when set.
        stream_usage: ask for token usage at the end of a stream (`stream_options`); turn
            off for a server that rejects the option.
        task_headers: send `X-Chatroom-Task-Id` and `X-Chatroom-Attempt` with each call
            (sim-server seeds its outcome from them, as the in-process simulator does).
        extra_body: provider-specific fields merged into every request body (e.g. Zhipu's
            `{"thinking": {"type": "disabled"}}`).
        extra_headers: headers added to every request.
    """

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_tokens: int | None = None
    temperature: float | None = None
    system_prompt: str | None = None
    stream_usage: bool = True
    task_headers: bool = False
    extra_body: Mapping[str, Any] | None = None
    extra_headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ProviderConfigError("model must be a non-empty string (e.g. glm-4-flash)")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ProviderConfigError(
                f"base_url must start with http:// or https://, got {self.base_url!r}")
        for name in ("timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ProviderConfigError(f"{name} must be a positive number, got {value!r}")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int)
                                            or self.max_tokens < 1):
            raise ProviderConfigError(f"max_tokens must be an int >= 1, got {self.max_tokens!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> OpenAISettings:
        """Settings from the environment; keyword arguments that are not None win.

        Reads CHATROOM_ASYNC_OPENAI_MODEL, CHATROOM_ASYNC_OPENAI_BASE_URL (else
        OPENAI_BASE_URL) and CHATROOM_ASYNC_OPENAI_API_KEY (else OPENAI_API_KEY).

        Raises:
            ProviderConfigError: no model given, or an unknown or bad setting.
        """
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ProviderConfigError(f"unknown provider setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {"model": _first(env, ENV_MODEL),
                                  "base_url": _first(env, ENV_BASE_URL),
                                  "api_key": _first(env, ENV_API_KEY)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("model"):
            raise ProviderConfigError(
                "no model: pass --model or set CHATROOM_ASYNC_OPENAI_MODEL (e.g. glm-4-flash)")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def require_key(self) -> str:
        """The API key, or a clear error that says where to put one (without any value)."""
        if not self.api_key:
            raise ProviderConfigError(
                "no API key: set OPENAI_API_KEY (or CHATROOM_ASYNC_OPENAI_API_KEY) or pass "
                "--api-key; a local server that checks no key (vLLM, Ollama, sim-server) "
                "takes any non-empty value")
        return self.api_key


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None
