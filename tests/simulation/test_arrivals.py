"""Arrival processes: the right long-run rate, the right shape, reproducible plans."""

from __future__ import annotations

from typing import Any

import pytest

from chatroom_async.simulation.arrivals import (
    DEFAULT_PRIORITY_MIX,
    DEFAULT_REQUEST_MIX,
    arrival_times,
    check_mix,
    plan_arrivals,
    rng_for,
)
from chatroom_async.task import TaskPriority
from chatroom_async.validation import validate_request


def test_constant_arrivals_are_evenly_spaced() -> None:
    assert arrival_times("constant", 4, 2.0, rng_for(0, "x")) == [0.0, 0.5, 1.0, 1.5]


@pytest.mark.parametrize("kind", ["poisson", "bursty"])
def test_the_long_run_rate_is_the_rate_asked_for(kind: str) -> None:
    times = arrival_times(kind, 20_000, 10.0, rng_for(1, "x"), burstiness=4.0)
    assert len(times) == 20_000 and times[0] == 0.0
    assert times == sorted(times)
    assert (len(times) - 1) / times[-1] == pytest.approx(10.0, rel=0.08)


def test_bursty_arrivals_come_in_bursts_of_the_mean_size() -> None:
    times = arrival_times("bursty", 20_000, 10.0, rng_for(2, "x"), burstiness=5.0)
    assert len(times) / len(set(times)) == pytest.approx(5.0, rel=0.08)
    plain = arrival_times("poisson", 1000, 10.0, rng_for(2, "x"))
    assert len(set(plain)) == 1000


def test_a_plan_is_reproducible_and_follows_the_mix() -> None:
    kwargs: dict[str, Any] = {
        "tasks": 5000, "arrival": "poisson", "rate": 5.0, "burstiness": 5.0,
        "request_mix": DEFAULT_REQUEST_MIX, "priority_mix": DEFAULT_PRIORITY_MIX,
        "users": 50, "seed": 3}
    plan = plan_arrivals(**kwargs)
    assert plan == plan_arrivals(**kwargs)
    assert plan != plan_arrivals(**{**kwargs, "seed": 4})
    assert [a.task_id for a in plan[:2]] == ["sim-000000", "sim-000001"]
    chat = sum(a.request_type == "chat_completion" for a in plan) / len(plan)
    urgent = sum(a.priority is TaskPriority.URGENT for a in plan) / len(plan)
    assert chat == pytest.approx(0.7, abs=0.03) and urgent == pytest.approx(0.05, abs=0.015)
    assert {a.user_id for a in plan} == set(range(1, 51))
    for a in plan[:200]:  # every body passes the processor's validation
        validate_request(user_id=a.user_id, request_type=a.request_type,
                         request_data=a.request_data, priority=a.priority)


def test_changing_the_mix_keeps_the_arrival_times() -> None:
    base: dict[str, Any] = {"tasks": 100, "arrival": "poisson", "rate": 5.0,
                            "burstiness": 5.0, "priority_mix": DEFAULT_PRIORITY_MIX,
                            "users": 5, "seed": 3}
    one = plan_arrivals(request_mix={"translation": 1.0}, **base)
    two = plan_arrivals(request_mix=DEFAULT_REQUEST_MIX, **base)
    assert [a.at for a in one] == [a.at for a in two]


@pytest.mark.parametrize("mix", [{}, {"chat_completion": -1.0}, {"chat_completion": 0.0},
                                 {"poetry": 1.0}, {"chat_completion": float("nan")}])
def test_bad_mixes_are_rejected(mix: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        check_mix("request_mix", mix, ("chat_completion", "translation"))


def test_unknown_arrival_process() -> None:
    with pytest.raises(ValueError, match="unknown arrival"):
        arrival_times("weekly", 3, 1.0, rng_for(0, "x"))
