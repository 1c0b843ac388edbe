# ruff: noqa: ASYNC251  (blocking the loop is the point of this file)
"""Misbehaves on purpose, differently in each graded scenario (told apart by task id), to
prove that each misdeed costs only its own check and that the grader always finishes."""

import asyncio
import time
from typing import Any

from solutions import streaming as ref


class StreamingResponseHandler(ref.StreamingResponseHandler):
    async def handle_streaming_response(self, task_id: str, response_stream: Any) -> Any:
        if task_id == "t-first":  # swallows the grader's alarm: only a kill ends it
            while True:
                try:
                    time.sleep(0.2)
                except BaseException:  # noqa: BLE001
                    pass
        if task_id == "t-fast":  # hangs in a blocking call
            time.sleep(1000)
        if task_id == "t-resume":
            raise KeyError("boom")
        try:
            return await super().handle_streaming_response(task_id, response_stream)
        except asyncio.CancelledError:
            if task_id == "t-cancel":
                time.sleep(0.4)  # blocks the event loop
            raise
        except Exception:
            if task_id == "t-cut":
                asyncio.sleep(0)  # never awaited
            raise
