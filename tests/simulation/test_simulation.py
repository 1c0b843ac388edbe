"""The simulator: reproducible reports, queueing theory, faults in virtual time, the CLI."""

from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import inspect
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chatroom_async.errors import ProcessorError
from chatroom_async.settings import ProcessorSettings
from chatroom_async.simulation import (
    SimulationConfig,
    add_simulate_parser,
    run_simulate_command,
    simulate,
    simulate_async,
)
from chatroom_async.simulation.report import SimulationReport

#: Small and quick, yet with faults of every kind, retries and a backlog.
SMALL = SimulationConfig(tasks=300, concurrency=20, arrival="bursty", failure_rate=0.2, seed=11)


@pytest.fixture(scope="module")
def small_report() -> SimulationReport:
    return simulate(SMALL)


def test_the_same_seed_gives_the_same_report(small_report: SimulationReport) -> None:
    again = simulate(SMALL)
    assert again.to_dict() == small_report.to_dict()
    assert again == small_report  # the wall time is left out of equality too
    assert "run" not in small_report.to_dict()


def test_a_different_seed_gives_a_different_report(small_report: SimulationReport) -> None:
    other = simulate(dataclasses.replace(SMALL, seed=12))
    assert other.to_dict() != small_report.to_dict()
    assert other.series != small_report.series


def test_the_same_seed_gives_the_same_report_in_another_process() -> None:
    # str hashes are salted per process; nothing in a run may depend on them.
    config = {"tasks": 80, "concurrency": 8, "failure_rate": 0.2, "seed": 21}
    code = ("import json, sys; from chatroom_async.simulation import simulate; "
            f"json.dump(simulate(**{config!r}).to_dict(), sys.stdout)")
    here = json.loads(json.dumps(simulate(**config).to_dict()))  # type: ignore[arg-type]
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True, timeout=60).stdout
        assert json.loads(out) == here


def test_throughput_at_saturation_obeys_littles_law() -> None:
    # No faults, arrivals far above capacity: every worker is always busy, so the steady
    # throughput is concurrency / mean service time (L = lambda * W with L = concurrency).
    config = SimulationConfig(tasks=800, concurrency=20, rate=200.0, failure_rate=0.0,
                              timeout_s=300.0, request_mix={"chat_completion": 1.0},
                              backend={"output_tokens_p50": 40}, seed=3)
    report = simulate(config)
    assert report.totals["completed"] == 800 and report.totals["retries"] == 0
    steady = report.throughput["steady_per_s"]
    assert steady == pytest.approx(20 / report.service_time["mean"], rel=0.05)
    # ...and what the backend's settings predict, before running anything.
    assert steady == pytest.approx(20 / config.sim_settings().estimated_latency_s(), rel=0.05)
    assert report.occupancy["max_in_flight"] == 20
    assert report.occupancy["mean_in_flight"] == pytest.approx(
        report.throughput["overall_per_s"] * report.service_time["mean"], rel=0.01)


def test_retries_and_failures_are_reported_by_kind(small_report: SimulationReport) -> None:
    r = small_report
    t = r.totals
    assert t["submitted"] == 300 and t["unfinished"] == 0
    assert t["completed"] + t["failed"] + t["cancelled"] == 300
    assert t["retries"] == sum(r.retries_by_type.values()) > 0
    assert sum(r.failures_by_type.values()) == t["failed"]
    known = {"RateLimitError", "OverloadedError", "ServerError", "AITimeoutError",
             "StreamInterruptedError", "ContentFilterError", "ContextTooLongError"}
    assert set(r.retries_by_type) | set(r.failures_by_type) <= known
    assert {"RateLimitError", "OverloadedError"} <= set(r.retries_by_type)
    assert t["attempts"] == t["completed"] + t["failed"] + t["retries"]
    # the processor's own shared counters agree
    assert r.processor["completed_tasks"] == t["completed"]
    assert r.processor["failed_tasks"] == t["failed"]
    assert r.processor["retried_tasks"] == t["retries"]
    assert r.backend["calls"] == t["attempts"]


def test_a_30_s_timeout_on_hung_calls_costs_no_real_time() -> None:
    hangs = {"hang_rate": 0.3, "overloaded_rate": 0.0, "server_error_rate": 0.0,
             "stream_break_rate": 0.0, "hang_s": None}
    report = simulate(tasks=200, concurrency=20, rate=20.0, timeout_s=30.0, max_retries=1,
                      backend=hangs, seed=5)
    assert report.retries_by_type["AITimeoutError"] > 20
    assert report.failures_by_type["AITimeoutError"] > 0  # hung twice: out of retries
    assert report.service_time["max"] == pytest.approx(30.0)
    assert report.duration_s > 60.0
    assert report.wall_time_s < 10.0


def test_the_report_survives_json_and_prints_a_summary(small_report: SimulationReport) -> None:
    data = json.loads(json.dumps(small_report.to_dict(include_wall_time=True), allow_nan=False))
    assert data["run"]["wall_time_s"] > 0
    assert list(data)[:3] == ["config", "totals", "failures_by_type"]
    assert data["config"]["rate"] == pytest.approx(SMALL.effective_rate())
    text = small_report.summary()
    for word in ("throughput", "latency", "urgent", "ttft", "goodput", "retried on"):
        assert word in text


def test_latency_and_ttft_figures_are_consistent(small_report: SimulationReport) -> None:
    r = small_report
    overall = r.latency["overall"]
    assert overall["count"] == r.totals["completed"]
    assert overall["p50"] <= overall["p95"] <= overall["p99"] <= overall["max"]
    assert sum(s["count"] for s in r.latency["by_priority"].values()) == overall["count"]
    assert r.ttft["backend"]["count"] == r.totals["completed"]
    assert 0 < r.ttft["backend"]["p50"] < r.ttft["end_to_end"]["p95"]
    assert r.goodput["count"] <= r.totals["completed"]
    assert r.goodput["fraction"] == r.goodput["count"] / 300


def test_a_streamed_run_records_the_ttft_of_every_completed_task() -> None:
    streaming = ProcessorSettings(stream=True, publish_events=False)
    report = simulate(tasks=120, concurrency=10, failure_rate=0.2, settings=streaming, seed=4)
    assert report.ttft["backend"]["count"] == report.totals["completed"] > 0
    assert "StreamInterruptedError" in report.retries_by_type  # broken streams were retried
    assert 0 < report.ttft["backend"]["max"] <= report.service_time["max"]


def test_prefetch_runs_in_virtual_time_within_the_concurrency(
        small_report: SimulationReport) -> None:
    held = ProcessorSettings(stream=False, publish_events=False, prefetch=5)
    config = dataclasses.replace(SMALL, settings=held)
    report = simulate(config)
    assert report == simulate(config)  # deterministic with held tasks too
    assert report.totals["unfinished"] == 0 and report != small_report
    # Held tasks do not call the backend: at most 20 calls at once. (The report's own
    # in-flight figures count a task until its outcome is recorded, so with prefetch they
    # may exceed 20 by the outcomes still waiting to be recorded.)
    assert report.backend["peak_in_flight"] == 20


def test_the_time_series_add_up(small_report: SimulationReport) -> None:
    s = small_report.series
    step = s["t"][0]
    assert len(s["t"]) == len(s["completed_per_s"]) == len(s["queue_depth"]) == len(
        s["in_flight"]) <= 200
    assert round(sum(s["completed_per_s"]) * step) == small_report.totals["completed"]
    assert max(s["in_flight"]) <= 20
    assert small_report.occupancy["max_queue_depth"] > 0  # bursts build a backlog
    assert sum(s["in_flight"]) * step / small_report.duration_s == pytest.approx(
        small_report.occupancy["mean_in_flight"], rel=1e-6)


def test_urgent_tasks_overtake_low_ones_when_saturated() -> None:
    report = simulate(tasks=400, concurrency=10, rate=100.0, failure_rate=0.0, seed=2)
    by = report.latency["by_priority"]
    assert by["urgent"]["p50"] < by["normal"]["p50"] < by["low"]["p50"]


def test_the_horizon_stops_a_run_and_counts_the_unfinished() -> None:
    report = simulate(tasks=200, concurrency=2, rate=50.0, horizon_s=20.0, seed=1)
    assert report.totals["unfinished"] > 0
    assert report.duration_s == pytest.approx(20.0)


def test_the_default_rate_is_just_above_capacity() -> None:
    config = SimulationConfig(concurrency=50)
    capacity = 50 / config.sim_settings().estimated_latency_s()
    assert config.effective_rate() == pytest.approx(1.1 * capacity)
    assert SimulationConfig(rate=3.0).effective_rate() == 3.0


@pytest.mark.parametrize("bad", [
    {"tasks": 0}, {"concurrency": 0}, {"arrival": "weekly"}, {"rate": -1.0},
    {"request_mix": {"poetry": 1.0}}, {"priority_mix": {"low": 0.0}}, {"failure_rate": 2.0},
    {"timeout_s": 0.0}, {"profile": "nope"}, {"backend": {"ttft_p50_s": -1.0}},
    {"backend": {"no_such_setting": 1}}, {"burstiness": 0.5}, {"tasks": True},
])
def test_invalid_settings_fail_loudly(bad: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        SimulationConfig(**bad)  # type: ignore[arg-type]


async def test_simulate_async_runs_inside_a_running_loop() -> None:
    config = SimulationConfig(tasks=100, concurrency=5, failure_rate=0.1, seed=4)
    inside = await simulate_async(config)
    in_a_thread = await asyncio.to_thread(simulate, config)  # no loop in that thread
    assert inside.to_dict() == in_a_thread.to_dict()
    assert inside.totals["submitted"] == 100


async def test_simulate_refuses_a_running_loop() -> None:
    with pytest.raises(ProcessorError, match=r"await simulate_async\(config\)"):
        simulate(tasks=10)


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatroom-async")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_prints_a_summary_or_the_full_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(["simulate", "--tasks", "60", "--concurrency", "4", "--failure-rate", "0.1",
                 "--seed", "9", "--rate", "5", "--arrival", "constant"])
    assert args.handler is run_simulate_command
    assert run_simulate_command(args) == 0
    assert "throughput" in capsys.readouterr().out
    assert run_simulate_command(_cli(["simulate", "--tasks", "60", "--seed", "9", "--json"])) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["submitted"] == 60 and data["config"]["seed"] == 9
    assert math.isfinite(data["run"]["wall_time_s"])


def test_cli_rejects_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_simulate_command(_cli(["simulate", "--tasks", "0"])) == 2
    assert "tasks" in capsys.readouterr().err


DOC = Path(__file__).resolve().parents[2] / "docs" / "simulation.md"


def _doc_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.DOTALL)


def test_the_docs_script_example_runs() -> None:
    exec(compile(_doc_examples()[0], str(DOC), "exec"), {})  # noqa: S102 - docs are ours


async def test_the_docs_notebook_example_runs() -> None:
    code = compile(_doc_examples()[1], str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    pending = eval(code, {})  # a coroutine: the cell has a top-level await
    assert inspect.iscoroutine(pending)
    await pending
