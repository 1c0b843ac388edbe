"""Replay of a SimulationReport, the what-if playground and `simulate --plot`."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("ipywidgets")

from chatroom_async import SimulationConfig, simulate, simulate_async  # noqa: E402
from chatroom_async.cli import main as cli_main  # noqa: E402
from chatroom_async.dashboard import Frame, render_png, report_frame  # noqa: E402
from chatroom_async.dashboard.figure import COLORS  # noqa: E402
from chatroom_async.dashboard.playground import Playground  # noqa: E402
from chatroom_async.dashboard.whatif import WhatIf, service_per_task  # noqa: E402
from chatroom_async.queueing import mmc  # noqa: E402
from tests.test_dashboard import has_color, others_tasks, panel, pixels  # noqa: E402


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    return simulate(SimulationConfig(tasks=300, concurrency=4, rate=3.0, seed=2,
                                     failure_rate=0.1, backend={"max_concurrency": 3}))


def test_replay_frame_is_the_report(report) -> None:  # type: ignore[no-untyped-def]
    frame = report_frame(report)
    assert isinstance(frame, Frame)
    assert list(frame.completed_per_s) == report.series["completed_per_s"]
    assert list(frame.queue["all priorities"]) == report.series["queue_depth"]
    assert list(frame.in_flight) == report.series["in_flight"] and set(frame.limit) == {4}
    assert frame.latency["queue wait"]["p95"] == report.queue_wait["p95"]
    assert dict(frame.retries_by_kind) == report.retries_by_type
    assert frame.rate_limited_by_code["1302 in flight"] == \
        report.backend["errors"]["concurrency_limit"] > 0
    step = report.series["t"][0]
    assert sum(frame.completed_per_s) * step == report.totals["completed"]
    rgb = pixels(render_png(frame))
    assert has_color(panel(rgb, 0, 0), COLORS["completed"])
    assert has_color(panel(rgb, 1, 0), COLORS["processing"], least=200)  # latency bars
    assert has_color(panel(rgb, 1, 2), COLORS["429"], least=200)


async def test_playground_reruns_and_predicts() -> None:
    before = others_tasks()
    pg = await Playground(rate=1.0, concurrency=8, sim_seconds=60.0).start()
    first = pg.current
    assert first is not None and len(pg.history) == 1
    pg.sliders["rate"].value = 1.5  # two quick moves: one run with the latest values
    pg.sliders["rate"].value = 2.0
    await pg.settle()
    now = pg.current
    assert now is not None and now.point.rate == 2.0 and len(pg.history) == 2
    assert now.report.config["rate"] == 2.0 and now.report.config["concurrency"] == 8
    expected = mmc(2.0, service_per_task(now.report), 8)
    assert now.prediction == expected and math.isfinite(expected.mean_latency_s)
    again = await pg.run(concurrency=2)  # past the knee: the queue grows
    assert again.prediction.utilization > 1 and again.mean_latency_s > now.mean_latency_s
    rgb = pixels(pg.png())
    assert has_color(rgb, COLORS["completed"]) and has_color(rgb, COLORS["limit"])
    await pg.stop()
    assert others_tasks() == before


async def test_the_same_point_gives_the_same_report() -> None:
    point = WhatIf(rate=2.0, concurrency=3, failure_rate=0.05, sim_seconds=30.0, seed=4)
    a, b = await simulate_async(point.config()), await simulate_async(point.config())
    assert a == b and a.config["max_retries"] == 3


def test_simulate_plot_writes_the_panels(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.png"
    assert cli_main(["simulate", "--tasks", "120", "--concurrency", "4", "--seed", "1",
                     "--failure-rate", "0.1", "--plot", str(out)]) == 0
    assert f"plot written to {out}" in capsys.readouterr().out
    rgb = pixels(out.read_bytes())
    assert has_color(panel(rgb, 0, 0), COLORS["completed"])
    assert cli_main(["simulate", "--tasks", "5", "--plot", str(tmp_path / "no" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err


def test_playground_event_loop_is_free_while_it_runs() -> None:
    async def main() -> int:
        ticks = 0
        pg = Playground(rate=2.0, concurrency=4, sim_seconds=60.0)
        run = asyncio.ensure_future(pg.start())
        while not run.done():  # the simulation runs on a worker thread
            ticks += 1
            await asyncio.sleep(0)
        await run
        return ticks
    assert asyncio.run(main()) > 10
