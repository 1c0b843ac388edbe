"""Wrong on purpose: every delta, the first included, waits out a full coalescing window."""

from solutions import streaming as ref
from solutions.streaming import StreamingResponseHandler  # noqa: F401


def _schedule(self: ref._Coalescer) -> None:
    if self._timer is None:
        self._timer = self.loop.call_later(self.interval_s, self.flush)


ref._Coalescer._schedule = _schedule  # type: ignore[method-assign]
