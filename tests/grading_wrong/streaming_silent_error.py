"""Wrong on purpose: when the stream breaks, the client is not told (no error frame)."""

from typing import Any

from solutions import streaming as ref


class StreamingResponseHandler(ref.StreamingResponseHandler):
    async def handle_streaming_response(self, task_id: str, response_stream: Any) -> Any:
        stream = self._stream(task_id)
        emit = stream.emit

        def quiet(kind: str, text: str = "", error: str | None = None) -> None:
            if kind != "error":
                emit(kind, text, error)

        stream.emit = quiet  # type: ignore[method-assign]
        try:
            return await super().handle_streaming_response(task_id, response_stream)
        finally:
            del stream.emit
