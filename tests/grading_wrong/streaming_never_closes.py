"""Wrong on purpose: the backend's stream is read but never closed."""

from typing import Any

from solutions import streaming as ref


class _NoClose:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __aiter__(self) -> Any:
        return self.inner.__aiter__()

    async def aclose(self) -> None:
        pass


class StreamingResponseHandler(ref.StreamingResponseHandler):
    async def handle_streaming_response(self, task_id: str, response_stream: Any) -> Any:
        return await super().handle_streaming_response(task_id, _NoClose(response_stream))
