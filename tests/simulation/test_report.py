"""Report arithmetic on hand-made records: totals, rates, goodput, time averages."""

from __future__ import annotations

import dataclasses
import json

import pytest

from chatroom_async.simulation.report import RunRecord, SimulationReport, TaskTrace, build_report


def _record() -> RunRecord:
    r = RunRecord()
    r.traces = {
        "a": TaskTrace(0.0, "high", 0.0, 0.0, False, 1.0, "completed", ttft=0.5),
        "b": TaskTrace(0.0, "low", 1.0, 1.0, False, 4.0, "completed", retries=1, ttft=0.25),
        "c": TaskTrace(1.0, "low", 2.0, 2.0, False, 3.0, "failed", "ServerError", retries=2),
        "d": TaskTrace(2.0, "normal"),
    }
    # in flight: 1 on [0, 1), 1 on [1, 2), 2 on [2, 3), 1 on [3, 4), 0 after
    r.step_t = [0.0, 1.0, 2.0, 3.0, 4.0]
    r.step_in_flight = [1, 1, 2, 1, 0]
    r.step_queue = [1, 1, 1, 1, 1]
    r.attempt_s = [1.0, 0.5, 3.0, 0.5, 0.5, 1.0]
    r.retries_by_type = {"ServerError": 2, "RateLimitError": 1}
    r.end = 4.0
    return r


def _report() -> SimulationReport:
    return build_report(_record(), config={"rate": 1.0, "tasks": 4}, latency_target_s=2.0,
                        sample_interval_s=2.0, backend={}, processor={})


def test_totals_and_counts() -> None:
    r = _report()
    assert r.totals == {"submitted": 4, "completed": 2, "failed": 1, "cancelled": 0,
                        "unfinished": 1, "retries": 3, "attempts": 6}
    assert r.failures_by_type == {"ServerError": 1}
    assert list(r.retries_by_type) == ["RateLimitError", "ServerError"]  # sorted
    assert r.duration_s == 4.0


def test_latency_goodput_and_ttft() -> None:
    r = _report()
    assert r.latency["overall"]["count"] == 2 and r.latency["overall"]["max"] == 4.0
    assert list(r.latency["by_priority"]) == ["high", "low"]
    assert r.goodput == {"target_s": 2.0, "count": 1, "fraction": 0.25, "per_s": 0.25}
    assert r.ttft["backend"]["max"] == 0.5
    assert r.ttft["end_to_end"]["max"] == 1.25  # waited 1 s, then a 0.25 s TTFT
    assert r.queue_wait["count"] == 3


def test_time_series_are_time_averages() -> None:
    r = _report()
    assert r.series["t"] == [2.0, 4.0]
    assert r.series["in_flight"] == [1.0, 1.5]
    assert r.series["completed_per_s"] == [0.5, 0.5]
    assert r.occupancy["mean_in_flight"] == 1.25
    assert r.occupancy["max_in_flight"] == 2


def test_wall_time_stays_out_of_equality_and_to_dict() -> None:
    r = _report()
    timed = dataclasses.replace(r, wall_time_s=3.0)
    assert timed == r and timed.to_dict() == r.to_dict()
    assert timed.to_dict(include_wall_time=True)["run"] == {"wall_time_s": 3.0,
                                                            "simulated_per_wall_s": 4 / 3}
    json.dumps(timed.to_dict(include_wall_time=True), allow_nan=False)


def test_an_automatic_step_keeps_series_short() -> None:
    r = build_report(_record(), config={}, latency_target_s=2.0, sample_interval_s=None,
                     backend={}, processor={})
    assert r.series["t"][0] == pytest.approx(0.1) and len(r.series["t"]) == 40
