"""Wrong on purpose: a client that (re)connects gets only new frames, never the history."""

from typing import Any

from solutions import streaming as ref


class StreamingResponseHandler(ref.StreamingResponseHandler):
    async def attach(self, task_id: str, client: Any, last_seq: int = 0) -> None:
        stream = self._stream(task_id)
        await super().attach(task_id, client, last_seq=stream.history[-1].seq
                             if stream.history else 0)
