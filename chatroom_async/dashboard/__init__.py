"""Dashboards for the notebooks: a live view of a processor, the controls of a lab, the
replay of a simulation report and the what-if playground (needs the `notebooks` extra:
ipywidgets and matplotlib).

    from chatroom_async.dashboard import Lab, LiveDashboard, Playground, replay

    lab = await Lab(rate=8, concurrency=4).start()
    lab                      # controls + live panels; other cells keep running
    await lab.stop()         # the last frame stays in the notebook

Everything here reads the processor through its public API (stats and events), never Redis.
"""

from __future__ import annotations

try:
    import ipywidgets  # type: ignore[import-untyped]  # noqa: F401
    import matplotlib  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("chatroom_async.dashboard needs ipywidgets and matplotlib: "
                      "pip install 'chatroom_async[notebooks]'") from exc

from .figure import draw, render_png, save_png
from .frame import Frame
from .lab import LATENCY_PROFILES, Lab
from .live import LiveDashboard
from .load import LoadGenerator
from .playground import Playground
from .replay import replay, report_frame, save_report_png
from .sampler import Sample, Sampler

__all__ = ["LATENCY_PROFILES", "Frame", "Lab", "LiveDashboard", "LoadGenerator", "Playground",
           "Sample", "Sampler", "draw", "render_png", "replay", "report_frame", "save_png",
           "save_report_png"]
