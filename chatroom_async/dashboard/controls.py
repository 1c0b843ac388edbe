"""`Controls`: the widgets beside a `Lab`'s dashboard, and what each one changes.

Sliders apply when released (`continuous_update=False`); a change shows in the next
frames. A new concurrency restarts the lab's workers, so it runs as a background task the
lab keeps; the others apply at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as widgets  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from .lab import Lab

_STYLE = {"description_width": "200px"}
_LAYOUT = widgets.Layout(width="470px")


def _slider(cls: Any, description: str, value: float, lo: float, hi: float,
            step: float) -> Any:
    return cls(value=value, min=lo, max=hi, step=step, description=description,
               continuous_update=False, style=_STYLE, layout=_LAYOUT)


class Controls:
    """The lab's control panel: load on/off and rate, concurrency, provider settings."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        s = lab.backend.settings
        self.load = widgets.ToggleButton(value=False, description="load generator",
                                         icon="play", tooltip="start / stop the load")
        self.rate = _slider(widgets.FloatSlider, "arrivals (tasks/s)", lab.load.rate, 0.5, 60, 0.5)
        self.concurrency = _slider(widgets.IntSlider, "concurrency (workers)",
                                   lab.concurrency, 1, 64, 1)
        self.failure_rate = _slider(widgets.FloatSlider, "provider failure rate",
                                    s.failure_rate or 0.0, 0.0, 0.5, 0.01)
        self.latency = widgets.Dropdown(options=list(_profiles()), value=lab.latency,
                                        description="provider latency", style=_STYLE,
                                        layout=_LAYOUT)
        self.provider_limit = _slider(widgets.IntSlider, "provider max in flight (0=off)",
                                      s.max_concurrency or 0, 0, 64, 1)
        self.rpm = _slider(widgets.IntSlider, "provider RPM (0=off)", int(s.rpm or 0), 0,
                           3000, 60)
        self.status = widgets.HTML()
        self.widget = widgets.VBox([
            widgets.HBox([self.load, self.status]),
            widgets.HBox([widgets.VBox([self.rate, self.concurrency, self.failure_rate]),
                          widgets.VBox([self.latency, self.provider_limit, self.rpm])])])
        for name in ("load", "rate", "concurrency", "failure_rate", "latency",
                     "provider_limit", "rpm"):
            getattr(self, name).observe(getattr(self, "_on_" + name), names="value")

    def refresh(self) -> None:
        """Show the lab's current state on the widgets (without triggering them again)."""
        running = self.lab.load.running
        if self.load.value != running:
            self.load.unobserve(self._on_load, names="value")
            self.load.value = running
            self.load.observe(self._on_load, names="value")
        self.load.icon = "stop" if running else "play"
        self.status.value = (f"load {'on' if running else 'off'} at {self.lab.load.rate:g}/s · "
                             f"{self.lab.concurrency} workers · restarts {self.lab.restarts}")

    def _on_load(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.lab.load.start()
            self.refresh()
            return

        async def stop() -> None:
            await self.lab.load.stop()
            self.refresh()
        self.lab.spawn(stop())

    def _on_rate(self, change: dict[str, Any]) -> None:
        self.lab.load.rate = change["new"]
        self.refresh()

    def _on_concurrency(self, change: dict[str, Any]) -> None:
        async def apply() -> None:
            await self.lab.set_concurrency(int(change["new"]))
            self.refresh()
        self.lab.spawn(apply())

    def _on_failure_rate(self, change: dict[str, Any]) -> None:
        self.lab.set_provider(failure_rate=float(change["new"]))

    def _on_latency(self, change: dict[str, Any]) -> None:
        self.lab.set_latency(change["new"])

    def _on_provider_limit(self, change: dict[str, Any]) -> None:
        self.lab.set_provider(max_concurrency=int(change["new"]) or None)

    def _on_rpm(self, change: dict[str, Any]) -> None:
        self.lab.set_provider(rpm=float(change["new"]) or None)


def _profiles() -> list[str]:
    from .lab import LATENCY_PROFILES

    return list(LATENCY_PROFILES)
