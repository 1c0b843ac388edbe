"""Helpers for the provider tests: a sim-server on a free loopback port in the test's own
event loop, and a backend pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from chatroom_async import AIRequest
from chatroom_async.providers import OpenAIBackend, SimServer
from chatroom_async.simulated import SimulatedAIBackend

MODEL = "glm-4-flash"


@asynccontextmanager
async def serving(profile: str = "instant", *, seed: int = 3, api_key: str | None = None,
                  **overrides: Any) -> AsyncIterator[SimServer]:
    """A SimServer for `SimulatedAIBackend.from_profile(profile, **overrides)`."""
    backend = SimulatedAIBackend.from_profile(profile, seed=seed, **overrides)
    async with SimServer(backend, api_key=api_key) as server:
        yield server


def backend_for(server: SimServer, **fields: Any) -> OpenAIBackend:
    options: dict[str, Any] = {"model": MODEL, "base_url": server.base_url, "api_key": "sk-test",
                               "task_headers": True}
    options.update(fields)
    return OpenAIBackend(**options)


def request(request_type: str = "chat_completion", task_id: str = "t1", attempt: int = 1,
            **data: Any) -> AIRequest:
    defaults = {"chat_completion": {"message": "你好，介绍一下异步处理"},
                "content_summary": {"content": "异步处理让聊天室在等待模型时继续服务其他用户。"},
                "translation": {"text": "你好世界", "target_language": "en"}}
    return AIRequest(task_id, attempt, 1, request_type, {**defaults[request_type], **data})
