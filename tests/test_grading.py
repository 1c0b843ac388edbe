"""The autograder discriminates: the reference solutions score 100 %, the untouched stubs
0 %, each deliberately wrong answer (tests/grading_wrong/) loses exactly the points of the
checks it should fail, and code that hangs, blocks the loop, raises or forgets an await
costs only its own check while the grader still finishes and prints its table."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chatroom_async import InstantBackend
from chatroom_async.grading import Frame, HandlerBackend, load_exercise, render
from chatroom_async.grading.runner import Grading, grade, summary, table

ROOT = Path(__file__).resolve().parents[1]
WRONG = Path(__file__).parent / "grading_wrong"


def scratch_root(tmp_path: Path, exercise: str, answer: str) -> Path:
    """A project folder whose exercises/<exercise>.py is tests/grading_wrong/<answer>.py."""
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    shutil.copytree(ROOT / "exercises", tmp_path / "exercises")
    shutil.copy(WRONG / f"{answer}.py", tmp_path / "exercises" / f"{exercise}.py")
    return tmp_path


def scores(exercises: list[str], impl: str, root: Path) -> dict[str, Any]:
    return summary(grade(exercises, impl, root), impl)


def by_title(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["title"].split()[0]: c for e in result["exercises"].values() for c in e["checks"]}


def test_the_solutions_score_full_marks() -> None:
    result = scores(["streaming", "scheduling"], "solutions", ROOT)
    assert (result["earned"], result["total"]) == (200, 200), table(result)


def test_the_untouched_stubs_score_zero_each_saying_not_implemented() -> None:
    result = scores(["streaming", "scheduling"], "exercises", ROOT)
    assert result["earned"] == 0 and result["total"] == 200
    assert {c["status"] for c in by_title(result).values()} == {"not_implemented"}, table(result)
    assert all(c["hint"] for c in by_title(result).values())


WRONG_ANSWERS = {  # answer module -> the one check it must fail
    "streaming_late_first": "首字延迟",
    "streaming_every_chunk": "合并推送",
    "streaming_silent_error": "中断与重试",
    "streaming_never_closes": "及时取消",
    "streaming_no_replay": "断线续传",
    "streaming_inline_send": "慢客户端",
    "scheduling_tier_blind": "VIP",
    "scheduling_strict": "不饿死",
    "scheduling_no_dependencies": "任务依赖",
    "scheduling_no_batching": "批处理",
    "scheduling_fixed_limit": "自适应并发",
}


@pytest.mark.parametrize("answer", sorted(WRONG_ANSWERS))
def test_a_wrong_answer_loses_exactly_the_points_of_its_check(answer: str,
                                                              tmp_path: Path) -> None:
    exercise = answer.split("_")[0]
    result = scores([exercise], "exercises", scratch_root(tmp_path, exercise, answer))
    checks = by_title(result)
    failed = {title for title, c in checks.items() if c["earned"] < c["points"]}
    assert failed == {WRONG_ANSWERS[answer]}, table(result)
    lost = checks[WRONG_ANSWERS[answer]]
    assert result["earned"] == result["total"] - lost["points"]
    assert lost["status"] == "failed" and lost["message"] and lost["hint"]


def test_misbehaving_code_costs_only_its_own_checks_and_the_grader_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATROOM_ASYNC_GRADE_LIMIT_S", "2")
    root = scratch_root(tmp_path, "streaming", "streaming_misbehaves")
    result = scores(["streaming"], "exercises", root)
    status = {t: c["status"] for t, c in by_title(result).items()}
    assert status == {"首字延迟": "timeout",    # swallows the alarm: killed, rerun without it
                      "完整有序": "passed",
                      "合并推送": "blocked",    # time.sleep(1000): interrupted, named as blocking
                      "中断与重试": "failed",   # an un-awaited coroutine
                      "及时取消": "blocked",    # time.sleep(0.4) on cancel
                      "断线续传": "error",      # KeyError
                      "慢客户端": "passed"}, table(result)
    messages = {t: c["message"] for t, c in by_title(result).items()}
    assert "never awaited" in messages["中断与重试"]
    assert "KeyError: 'boom'" in messages["断线续传"]
    assert result["earned"] == 25


def test_the_command_prints_the_table_or_json_and_fails_on_a_missing_folder(
        tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "chatroom_async", "grade"]
    done = subprocess.run([*cli, "streaming", "--impl", "solutions", "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["percent"] == 100.0 and list(data["exercises"]) == ["streaming"]
    missing = subprocess.run([*cli, "--root", str(tmp_path)], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60)
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1
    assert missing.stderr.startswith("chatroom-async grade: no folder with exercises/")


def test_the_table_shows_points_reason_and_hint_of_a_failed_check() -> None:
    grading = Grading(checks=[
        {"id": "a", "exercise": "streaming", "points": 15, "title": "首字延迟", "hint": "想一想"},
        {"id": "b", "exercise": "streaming", "points": 10, "title": "慢客户端", "hint": "别等"}],
        outcomes={"a": {"status": "passed"}, "b": {"status": "blocked", "message": "阻塞了"}})
    text = table(summary(grading, "exercises"))
    assert "✔  15/15  首字延迟" in text and "✘   0/10  慢客户端" in text
    assert "原因：阻塞了" in text and "提示：别等" in text and "总分 15/25 (60%)" in text


def test_render_shows_what_a_user_sees() -> None:
    frames = [Frame("t", 1, "delta", "你"), Frame("t", 2, "delta", "好"),
              Frame("t", 3, "error", "你好", "StreamInterruptedError: cut"),
              Frame("t", 4, "retry"), Frame("t", 5, "delta", "您好"), Frame("t", 6, "done")]
    assert render(frames[:3]) == "你好" and render(frames) == "您好"


def test_handler_backend_needs_a_streaming_backend() -> None:
    with pytest.raises(TypeError, match="cannot stream"):
        HandlerBackend(InstantBackend(), object())  # type: ignore[arg-type]


def test_load_exercise_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATROOM_ASYNC_IMPL", "solutions")
    assert load_exercise("streaming", root=ROOT).__name__ == "solutions.streaming"
    with pytest.raises(ValueError, match="impl must be one of"):
        load_exercise("streaming", impl="mine", root=ROOT)


@pytest.mark.parametrize("exercise", ["streaming", "scheduling"])
def test_every_check_passes_in_process_on_the_solutions(exercise: str) -> None:
    """The checks are plain functions: run here (not in the grader's child process), so
    that a failure shows its traceback and the checks count towards coverage."""
    module = importlib.import_module(f"chatroom_async.grading.checks.test_{exercise}")
    checks = [f for name, f in vars(module).items() if name.startswith("test_")]
    assert len(checks) == {"streaming": 7, "scheduling": 5}[exercise]
    for check in checks:
        check(lambda name: load_exercise(name, "solutions", ROOT))


def test_a_failure_is_named_by_its_kind() -> None:
    from chatroom_async.grading.harness import LoopBlocked
    from chatroom_async.grading.plugin import CheckTimeout, _why

    def why(exc: BaseException) -> tuple[str, str]:
        try:
            raise exc
        except BaseException:  # noqa: BLE001 - what the plugin receives
            return _why(pytest.ExceptionInfo.from_current())

    assert why(NotImplementedError())[0] == "not_implemented"
    assert why(CheckTimeout("超时"))[0] == "timeout"
    assert why(LoopBlocked("阻塞")) == ("blocked", "阻塞")
    assert why(AssertionError("少了")) == ("failed", "少了")
    status, message = why(KeyError("boom"))
    assert status == "error" and message.startswith("代码抛出了 KeyError: 'boom'（test_grading.py:")
