"""The worker command's event loop (`chatroom_async.eventloop`): uvloop when installed,
asyncio's otherwise, or what `--loop` names; a loop that cannot be had is one line, exit 2."""

from __future__ import annotations

import asyncio
import sys

import pytest

from chatroom_async import cli_errors, eventloop
from chatroom_async.cli import main as cli_main

uvloop = pytest.importorskip("uvloop")  # the dev extra installs it (not on Windows)


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without uvloop: importing it fails."""
    monkeypatch.setitem(sys.modules, "uvloop", None)


async def _which() -> str:
    return eventloop.loop_name()


def test_auto_takes_uvloop_when_installed() -> None:
    assert eventloop.loop_factory("auto") is uvloop.new_event_loop
    assert eventloop.loop_factory("uvloop") is uvloop.new_event_loop
    assert eventloop.loop_factory("asyncio") is None
    assert eventloop.run(_which()) == "uvloop"
    assert eventloop.run(_which(), "asyncio") == "asyncio"
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        eventloop.loop_factory("trio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(no_uvloop: None) -> None:
    assert eventloop.loop_factory("auto") is None
    assert eventloop.run(_which(), "auto") == "asyncio"
    coro = _which()
    with pytest.raises(eventloop.LoopUnavailableError, match=r"chatroom_async\[fast\]"):
        eventloop.run(coro, "uvloop")
    assert coro.cr_frame is None  # closed, not left un-awaited


def test_asking_the_worker_for_a_missing_uvloop_is_one_line_and_exit_2(
        no_uvloop: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["worker", "--loop", "uvloop", "--backend", "instant"])
    err = capsys.readouterr().err
    assert exit_.value.code == cli_errors.USAGE
    assert "uvloop is not installed" in err and len(err.strip().splitlines()) <= 2


def test_the_package_leaves_a_running_loop_alone() -> None:
    # Importing the package and running a processor's code never swaps the loop: only the
    # command line chooses (a notebook's kernel keeps its own).
    async def inside() -> str:
        import chatroom_async  # noqa: F401

        return eventloop.loop_name()

    assert asyncio.run(inside()) == "asyncio"
