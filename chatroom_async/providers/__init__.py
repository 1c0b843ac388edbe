"""Real AI providers behind the processor, and the simulator served as one.

- `OpenAIBackend` (`openai_backend`): any OpenAI-compatible chat API (Zhipu GLM, OpenAI,
  DeepSeek, vLLM, Ollama) through the official `openai` SDK; `OpenAISettings` (`config`)
  says where and how; `errors` maps provider answers onto the package's error tree;
  `RateLimits` (`ratelimits`) is what an answer's `x-ratelimit-*` headers announced.
- `SimServer` (`sim_server`): `SimulatedAIBackend` as an OpenAI-compatible HTTP API on
  loopback (`chatroom-async sim-server`).

An edge of the package: it imports only the public API (`chatroom_async`,
`chatroom_async.simulated`). The SDK and the server need the `provider` extra
(`pip install "chatroom_async[provider]"`); this package itself imports without it, and
its names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "OpenAIBackend": "openai_backend",
    "OpenAISettings": "config",
    "ProviderConfigError": "config",
    "ProviderAuthError": "errors",
    "QuotaExceededError": "errors",
    "RateLimits": "ratelimits",
    "SimServer": "sim_server",
}

__all__ = sorted(_WHERE)

EXTRA_HINT = 'the provider extra is not installed: pip install "chatroom_async[provider]"'


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        loaded = importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name in ("openai", "starlette", "uvicorn"):
            raise ImportError(f"{name} needs {exc.name}: {EXTRA_HINT}") from exc
        raise
    return getattr(loaded, name)
