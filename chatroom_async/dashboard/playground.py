"""`Playground`: sliders over a simulated pool; each change re-runs a few simulated
minutes of the real processor in virtual time and redraws, the M/M/c prediction beside
the measurement, so a student can find the knee of the latency curve by hand.

A run takes about a second (on a worker thread: the kernel stays free). A change made
while a run is going starts one more run, with the latest values, when it ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]
from IPython.display import Image

from .playground_figure import render_playground
from .whatif import Outcome, WhatIf, run_whatif

_STYLE = {"description_width": "200px"}
_LAYOUT = widgets.Layout(width="470px")

#: slider name -> (widget class, description, min, max, step)
SLIDERS: dict[str, tuple[Any, str, float, float, float]] = {
    "rate": (widgets.FloatSlider, "arrival rate (tasks/s)", 0.25, 20.0, 0.25),
    "concurrency": (widgets.IntSlider, "concurrency (workers)", 1, 50, 1),
    "provider_limit": (widgets.IntSlider, "provider max in flight (0=off)", 0, 50, 1),
    "rpm": (widgets.IntSlider, "provider RPM (0=off)", 0, 1200, 30),
    "failure_rate": (widgets.FloatSlider, "provider failure rate", 0.0, 0.5, 0.01),
    "max_retries": (widgets.IntSlider, "max retries", 0, 8, 1),
    "retry_base_s": (widgets.FloatSlider, "retry backoff base (s)", 0.1, 5.0, 0.1),
}


class Playground:
    """What-if sliders and the figure they redraw.

    Args:
        **start: `WhatIf` fields for the first run (rate, concurrency, ...).
    """

    def __init__(self, **start: Any) -> None:
        self.point = WhatIf(**start)
        self.history: list[Outcome] = []
        self.current: Outcome | None = None
        self.last_run_s = 0.0
        self.sliders = {name: cls(value=getattr(self.point, name), min=lo, max=hi, step=step,
                                  description=desc, continuous_update=False, style=_STYLE,
                                  layout=_LAYOUT)
                        for name, (cls, desc, lo, hi, step) in SLIDERS.items()}
        for slider in self.sliders.values():
            slider.observe(self._on_change, names="value")
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%",
                                                                       max_width="1000px"))
        self.label = widgets.HTML("<b>playground</b>: not run yet")
        names = list(self.sliders)
        self.widget = widgets.VBox([
            widgets.HBox([widgets.VBox([self.sliders[n] for n in names[:4]]),
                          widgets.VBox([self.sliders[n] for n in names[4:]])]),
            self.label, self.image])
        self._task: asyncio.Task[None] | None = None
        self._dirty = False

    async def start(self) -> Playground:
        """Run and draw the first point (inside the calling cell); returns the playground."""
        await self._run_once()
        return self

    async def run(self, **changes: Any) -> Outcome:
        """Move sliders by name (e.g. `rate=4`) and wait for the run they start."""
        for name, value in changes.items():
            if name not in self.sliders:
                raise ValueError(f"unknown slider {name!r}; one of {list(self.sliders)}")
            self.sliders[name].value = value
        await self.settle()
        assert self.current is not None
        return self.current

    async def settle(self) -> None:
        """Wait until the runs asked for so far are drawn."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Cancel a run in progress (no task is left behind)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _on_change(self, change: dict[str, Any]) -> None:
        self.point = dataclasses.replace(self.point, **{n: s.value for n, s in
                                                        self.sliders.items()})
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._runs())

    async def _runs(self) -> None:
        while self._dirty:
            self._dirty = False
            await self._run_once()

    async def _run_once(self) -> None:
        point = self.point
        self.label.value = f"<b>running</b> {point.rate:g} tasks/s, {point.concurrency} workers…"
        started = time.perf_counter()
        result = await run_whatif(point)
        self.history.append(result)
        self.current = result
        self.image.value = await asyncio.to_thread(render_playground, result, self.history)
        self.last_run_s = time.perf_counter() - started
        self.label.value = (f"<b>done</b> in {self.last_run_s:.1f} s: "
                            f"{result.report.duration_s:.0f} s simulated, "
                            f"{result.report.totals['submitted']} tasks")

    def png(self) -> bytes:
        return bytes(self.image.value)

    def snapshot(self) -> Image:
        """The figure as a static image, for viewers without widgets."""
        return Image(data=self.png(), format="png")  # type: ignore[no-untyped-call]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
