"""Every error of the command line is one line on stderr and a documented exit code; no
traceback. `--help` of every subcommand shows the defaults."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import AsyncIterator

import pytest

from chatroom_async import cli_errors
from chatroom_async.cli import build_parser
from chatroom_async.cli import main as cli_main
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue
from tests.conftest import REAL_URL, _real_client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NOBODY = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli_main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(("argv", "needle"), [
    (["submit", "--data", "{bad"], "not valid JSON"),
    (["submit", "--data", "[1, 2]"], "must be a JSON object"),
    (["worker", "--backend", "bogus"], "unknown backend 'bogus'"),
    (["worker", "--backend", "simulated:nope"], "unknown simulated profile"),
    (["worker", "--backend", "sleep:soon"], "must be a number"),
    (["worker", "--backend", "import:no_such_module_here:x"], "cannot import backend"),
    (["worker", "--concurrency", "-1"], "must be an integer >= 1"),
    (["worker", "--concurrency", "many"], "must be an integer"),
    (["worker", "--lease", "0"], "must be a number of seconds > 0"),
    (["worker", "--provider-rpm", "-3"], "must be a number per minute > 0"),
    (["worker", "--provider-concurrency", "0"], "must be an integer >= 1"),
    (["worker", "--drain", "-1"], "must be a number of seconds > 0"),
    (["submit", "--wait", "nan"], "must be a number of seconds >= 0"),
    (["status", "x", "--redis-url", "http://example.com"], "is not a Redis URL"),
    (["stats", "--namespace", "a:b"], "namespace must be"),
    (["stats", "--namespace", ""], "namespace must be"),
    (["frobnicate"], "invalid choice"),
])
def test_a_bad_command_line_is_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == cli_errors.USAGE and out == ""
    assert needle in one_line(err) and "--help" in err


@pytest.mark.parametrize("argv", [["status", "x"], ["cancel", "x"], ["stats"], ["submit"],
                                  ["worker", "--backend", "instant"]])
def test_an_unreachable_redis_is_one_line_and_exit_6(
        capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv, "--redis-url", NOBODY)
    assert code == cli_errors.REDIS and out == ""
    assert f"cannot reach Redis at {NOBODY}" in one_line(err) and "redis-server" in err


def test_every_subcommands_help_shows_its_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, subparser in sub.choices.items():
        code, out, _ = run(capsys, name, "--help")
        assert code == 0
        flat = " ".join(out.split())
        for action in subparser._actions:
            if action.default in (None, argparse.SUPPRESS, False) or not action.option_strings:
                continue
            shown = {str(action.default)}
            if isinstance(action.default, float):
                shown.add(f"{action.default:g}")
            assert any(f"default: {d}" in flat or f"default {d}" in flat for d in shown), \
                (name, action.dest)
    code, out, _ = run(capsys, "--help")
    assert "exit codes" in out and "130" in out


@pytest.fixture
async def real_namespace(namespace: str) -> AsyncIterator[str]:
    client = await _real_client()
    yield namespace
    await TaskQueue(client, Keys(namespace)).purge()
    await client.aclose()


@pytest.mark.real_redis
@pytest.mark.parametrize(("argv", "field"), [
    (["--user-id", "0"], "user_id"),
    (["--user-id", "a\tb"], "user_id"),
    (["--type", "poem"], "request_type"),
    (["--data", "{}"], "request_data.message"),
    (["--data", '{"message": "hi", "t": NaN}'], "request_data"),
    (["--type", "translation", "--data", '{"text": "a", "target_language": "en\\n"}'],
     "request_data.target_language"),
    (["--priority", "asap"], "priority"),
    (["--timeout", "99999"], "timeout"),
])
async def test_each_validation_error_is_one_line_and_exit_3(
        capsys: pytest.CaptureFixture[str], real_namespace: str, argv: list[str],
        field: str) -> None:
    code, out, err = await _run_in_thread(capsys, "submit", *argv, "--redis-url", REAL_URL,
                                          "--namespace", real_namespace)
    assert code == cli_errors.REJECTED and out == ""
    assert f"request rejected ({field})" in one_line(err) and "nothing was queued" in err
    client = await _real_client()
    assert not await client.keys(f"{real_namespace}:task:*")  # nothing was queued
    await client.aclose()


async def _run_in_thread(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """cli main() runs its own event loop: call it off this test's loop."""
    import asyncio

    code = await asyncio.to_thread(_main_code, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _main_code(argv: list[str]) -> int:
    try:
        return cli_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.real_redis
async def test_unknown_ids_wait_timeouts_and_finished_tasks(
        capsys: pytest.CaptureFixture[str], real_namespace: str) -> None:
    common = ["--redis-url", REAL_URL, "--namespace", real_namespace]
    for command in ("status", "cancel"):
        code, out, err = await _run_in_thread(capsys, command, "nope", *common)
        assert code == cli_errors.NOT_FOUND and out == ""
        assert "no task 'nope'" in one_line(err)
    # nobody works this namespace: the wait runs out
    code, out, err = await _run_in_thread(capsys, "submit", "--wait", "0.2", "--user-id",
                                          "alice", *common)
    assert code == cli_errors.WAIT_TIMEOUT and out == ""
    assert "unfinished after 0.2 s" in one_line(err) and "chatroom-async status" in err
    client = await _real_client()
    [key] = await client.keys(f"{real_namespace}:task:*")
    await client.aclose()
    task_id = key.rsplit(":", 1)[1]
    code, out, err = await _run_in_thread(capsys, "status", task_id, *common)
    assert code == 0 and json.loads(out)["user_id"] == "alice" and err == ""
    code, out, err = await _run_in_thread(capsys, "cancel", task_id, *common)
    assert (code, out.strip(), err) == (0, "true", "")
    code, out, err = await _run_in_thread(capsys, "cancel", task_id, *common)
    assert code == cli_errors.NOT_COMPLETED and out.strip() == "false"
    assert "already finished (cancelled)" in one_line(err)


@pytest.mark.real_redis
async def test_stats_survive_hand_written_counts(capsys: pytest.CaptureFixture[str],
                                                 real_namespace: str) -> None:
    client = await _real_client()
    keys = Keys(real_namespace)
    await client.hset(keys.depth, mapping={"urgent!": "1", "2": "3"})  # as the old claim wrote
    await client.hset(keys.stats, mapping={"completed_tasks": "many", "total_tasks": "3"})
    await client.set(keys.workers, "not a sorted set")
    await client.aclose()
    code, out, err = await _run_in_thread(capsys, "stats", "--redis-url", REAL_URL,
                                          "--namespace", real_namespace)
    assert code == 0 and err == ""
    stats = json.loads(out)
    assert stats["queue_depth"]["normal"] == 3 and stats["total_tasks"] == 3
    assert stats["completed_tasks"] == 0
    assert (stats["workers"], stats["worker_slots"]) == (0, 0)
