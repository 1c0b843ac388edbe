"""The M/M/c predictions match the textbook cases and the closed forms."""

from __future__ import annotations

import math

import pytest

from chatroom_async.queueing import erlang_c, littles_law, mmc


def test_one_server_is_mm1() -> None:
    # M/M/1: P(wait) = rho, Wq = rho / (mu - lambda)
    p = mmc(rate=0.8, service_s=1.0, servers=1)
    assert p.p_wait == pytest.approx(0.8)
    assert p.mean_wait_s == pytest.approx(0.8 / (1.0 - 0.8))
    assert p.mean_in_system == pytest.approx(0.8 / (1 - 0.8))


def test_erlang_c_textbook_value() -> None:
    # 2 servers, 1 Erlang offered: C = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # A call-centre classic: 10 agents, 8 Erlangs -> about 0.409
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=1e-3)


def test_many_servers_stay_finite() -> None:
    p = mmc(rate=450.0, service_s=1.0, servers=500)
    assert 0.0 < p.p_wait < 0.1
    assert math.isfinite(p.mean_wait_s)


def test_overload_is_unstable() -> None:
    p = mmc(rate=12.0, service_s=1.0, servers=10)
    assert not p.stable
    assert p.p_wait == 1.0 and math.isinf(p.mean_wait_s)
    assert p.throughput == pytest.approx(10.0)
    assert math.isinf(p.wait_quantile_s(0.95))


def test_wait_quantile() -> None:
    p = mmc(rate=0.5, service_s=1.0, servers=1)
    assert p.wait_quantile_s(0.4) == 0.0            # half the tasks never wait
    q95 = p.wait_quantile_s(0.95)
    assert math.exp(-(1.0 - 0.5) * q95) * p.p_wait == pytest.approx(0.05)
    with pytest.raises(ValueError):
        p.wait_quantile_s(1.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        erlang_c(0, 1.0)
    with pytest.raises(ValueError):
        mmc(rate=1.0, service_s=0.0, servers=2)
    assert littles_law(5.0, 2.0) == 10.0
