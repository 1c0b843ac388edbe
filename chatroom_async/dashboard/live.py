"""`LiveDashboard`: the six panels of a running processor, redrawn in the background.

One call in a cell shows it and returns at once; a task on the kernel's loop samples the
processor and redraws every `interval_s`, the drawing itself on a worker thread so the
processor's loop is not starved. `stop()` cancels and awaits that task, then draws a last
frame inside the calling cell, which a headless run (nbval, nbconvert) saves with the
widget; `snapshot()` gives the same frame as a static image.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]
from IPython.display import Image

from chatroom_async import AsyncAIProcessor, ProcessorError

from .figure import render_png
from .render import Renderer
from .sampler import Limit, Sample, Sampler


class LiveDashboard:
    """A live view of a processor's stats and events.

    Args:
        processor: a started processor; `max_workers=0` is fine (its workers may be
            other processes on the same Redis).
        interval_s: seconds between frames.
        limit: the concurrency limit drawn (see `Sampler`).
        window_s: the latency panel covers this many recent seconds.
        title: the figure's title.
        render: "process" draws frames in a worker process (the processor's loop keeps
            the GIL to itself), "thread" on a worker thread of this process.
    """

    def __init__(self, processor: AsyncAIProcessor, *, interval_s: float = 2.0,
                 limit: Limit = None, window_s: float = 30.0,
                 title: str = "chatroom_async: live", render: str = "process") -> None:
        self.sampler = Sampler(processor, limit=limit, window_s=window_s)
        self.interval_s, self.title = interval_s, title
        self.renderer = Renderer(render)
        self.last_draw_s = 0.0
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%",
                                                                       max_width="1000px"))
        self.label = widgets.HTML("<b>dashboard</b> not started")
        self.widget = widgets.VBox([self.label, self.image])
        self.draws = 0
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._heard = False
        self._drawn = asyncio.Condition()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> LiveDashboard:
        """Start redrawing in the background and return at once (call it on the loop).

        Frames come every `interval_s`, or less often on a machine where a frame takes
        longer than that to draw."""
        self.sampler.attach()
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="chatroom_async.dashboard")
        return self

    async def tick(self) -> Sample:
        """Take one sample and redraw (the frame is drawn on a worker thread)."""
        if not self._heard:  # other processes' events reach the sampler from here on
            self.sampler.attach()
            await self.sampler.processor.hear_others()
            self._heard = True
        sample = await self.sampler.sample()
        await self._draw("live")
        return sample

    async def _draw(self, state: str) -> None:
        frame = self.sampler.frame(self.title)
        started = time.perf_counter()
        png = await self.renderer.run(render_png, frame)
        self.last_draw_s = time.perf_counter() - started
        self.image.value = png  # widget traits are set on the loop, not on the thread
        self.label.value = f"<b>{state}</b> · {frame.subtitle}"
        self.draws += 1
        async with self._drawn:
            self._drawn.notify_all()

    async def next_frame(self) -> int:
        """Wait until the next frame is drawn; returns how many have been drawn."""
        async with self._drawn:
            await self._drawn.wait()
        return self.draws

    async def wait_until(self, predicate: Callable[[Sample], bool],
                         timeout_s: float = 30.0) -> Sample:
        """Wait frame by frame until `predicate(latest sample)` holds; return that sample.

        Raises:
            TimeoutError: not within `timeout_s`.
        """
        async with asyncio.timeout(timeout_s):
            while not (self.sampler.samples and predicate(self.sampler.samples[-1])):
                if self.running:
                    await self.next_frame()
                else:
                    await self.tick()
        return self.sampler.samples[-1]

    async def _loop(self) -> None:
        try:
            while True:
                await self.tick()
                # At most half the time drawing, however slow the machine is.
                await asyncio.sleep(max(self.interval_s, self.last_draw_s))
        except ProcessorError as exc:  # the processor under it stopped: so does the view
            self.error = exc
            await self._draw("stopped (the processor is not running)")

    async def stop(self) -> None:
        """Stop redrawing (cancel and await the task); draw a last frame if possible."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.sampler.processor.running:
            await self.sampler.sample()
        await self._draw("stopped")
        self.sampler.detach()
        await self.renderer.close()

    def png(self) -> bytes:
        """The last frame drawn, as PNG bytes (empty before the first)."""
        return bytes(self.image.value)

    def snapshot(self) -> Image:
        """The last frame as a static image, for viewers without widgets."""
        return Image(data=self.png(), format="png")  # type: ignore[no-untyped-call]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
