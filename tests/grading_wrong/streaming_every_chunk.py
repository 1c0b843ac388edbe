"""Wrong on purpose: no coalescing, one push per chunk."""

from solutions import streaming as ref


class StreamingResponseHandler(ref.StreamingResponseHandler):
    def __init__(self) -> None:
        super().__init__(min_interval_s=0.0)
