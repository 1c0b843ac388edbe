"""The checks of notebook 10 (学习检查): each runs the package, compares it with the
student's answer and prints feedback in Chinese; `board` keeps each item's outcome for the
summary at the end. Nothing here raises on a wrong or missing answer and the checks return
None (a cell shows only the feedback): the notebook runs top to bottom whatever was written.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from lesson_tools import fresh_redis, now, reply, sleeping_backend, virtual

from chatroom_async import (
    AIError,
    AITimeoutError,
    AsyncAIProcessor,
    BadRequestError,
    ContentFilterError,
    ContextTooLongError,
    FunctionBackend,
    LoopClock,
    OverloadedError,
    ProcessorSettings,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    simulate_async,
)

ITEMS = ("1 异步的重要性", "2 设计任务队列", "3 并发调用与结果处理", "4 状态与错误处理",
         "5 性能优化", "6 实践练习")
board: dict[str, bool | None] = dict.fromkeys(ITEMS)


def _mark(item: str, ok: bool, message: str) -> None:
    board[ITEMS[int(item) - 1]] = ok
    print(("✅ " if ok else "❌ ") + message)


def _missing(item: str, what: str) -> None:
    board[ITEMS[int(item) - 1]] = None
    print(f"⬜ 你还没有填写{what}。填好后重新运行这个单元格。")


# -- 1 ------------------------------------------------------------------------------------
def blocking_backend(seconds: float) -> FunctionBackend:
    """A call that blocks the event loop for `seconds` (like `requests.post` or `time.sleep`
    inside a coroutine): while it runs no other coroutine of the process runs. Modelled in
    virtual time by a lock that lets one call through at a time."""
    lock = asyncio.Lock()

    async def answer(request: Any) -> dict[str, Any]:
        async with lock:
            await asyncio.sleep(seconds)
        return reply(request)
    return FunctionBackend(answer)


async def _throughput(backend: Any, workers: int, tasks: int) -> float:
    p = AsyncAIProcessor(redis=fresh_redis(), max_workers=workers, backend=backend,
                         clock=LoopClock(), seed=1)
    await p.start()
    ids = [await p.submit_task(1, "chat_completion", {"message": f"m{i}"}, task_id=f"t{i:02d}")
           for i in range(tasks)]
    for task_id in ids:
        await p.wait_for_task(task_id, timeout=600)
    elapsed = now()
    await p.stop(drain_timeout_s=0)
    return round(tasks / elapsed, 2)


async def measure_sync_async(call_s: float = 2.0, workers: int = 10,
                             tasks: int = 20) -> dict[str, float]:
    """Throughput (tasks/s) of `workers` workers on `call_s`-second calls, blocking and async."""
    return {"sync": await virtual(lambda: _throughput(blocking_backend(call_s), workers, tasks)),
            "async": await virtual(lambda: _throughput(sleeping_backend(call_s), workers, tasks))}


def check_prediction(guess_sync: float | None, guess_async: float | None,
                     measured: dict[str, float]) -> None:
    """Item 1: both guesses within 20 % of the measurement."""
    if guess_sync is None or guess_async is None:
        return _missing("1", "两个预测（guess_sync 和 guess_async）")
    close = [abs(g - m) <= 0.2 * m for g, m in ((guess_sync, measured["sync"]),
                                               (guess_async, measured["async"]))]
    if all(close):
        return _mark("1", True, f"预测准确：同步 {measured['sync']}/s，"
                     f"异步 {measured['async']}/s。")
    return _mark("1", False, f"实测：同步 {measured['sync']}/s，异步 {measured['async']}/s。"
                 "想一想：阻塞的调用让整个事件循环停住，10 个工人其实一次只能做 1 件事。")


# -- 2 ------------------------------------------------------------------------------------
LOAD: dict[str, Any] = {"tasks": 400, "rate": 4.0, "failure_rate": 0.0, "seed": 5,
        "backend": {"max_concurrency": 20}}
TARGET_P95_S = 8.0


async def check_design(max_workers: int | None) -> None:
    """Item 2: at 4 requests/s (provider limit 20): p95 <= 8 s, no failure, no 429."""
    if max_workers is None:
        return _missing("2", " my_max_workers")
    r = await simulate_async(concurrency=max_workers, **LOAD)
    p95, failed = r.latency["overall"]["p95"], r.totals["failed"]
    rejected = sum(r.backend["errors"].values())
    text = f"max_workers={max_workers}：p95 {p95:.1f} s，失败 {failed} 个，429 {rejected} 次。"
    if p95 <= TARGET_P95_S and failed == 0 and rejected == 0:
        return _mark("2", True, text + "达标。")
    too_many = "工人太多：超过服务商的并发限制，多出来的调用只换来 429（见 04 笔记本第 3 节）。"
    too_few = ("工人太少：用利特尔法则算一算需要同时工作的工人数（见 04 笔记本第 1 节），"
               "再留出余量。")
    hint = too_many if rejected else too_few
    return _mark("2", False, text + hint)


# -- 3 ------------------------------------------------------------------------------------
AskAll = Callable[[AsyncAIProcessor, list[str]], Awaitable[list[str]]]


async def _run_ask_all(ask_all: AskAll, messages: list[str]) -> tuple[Any, float]:
    # Earlier messages take longer, so they finish last: the order must come from the input.
    backend = sleeping_backend(lambda r: 0.5 * (len(messages) - messages.index(
        r.request_data["message"])))
    p = AsyncAIProcessor(redis=fresh_redis(), max_workers=len(messages), backend=backend,
                         clock=LoopClock(), seed=1, settings=ProcessorSettings(stream=False))
    await p.start()
    try:
        got = await ask_all(p, messages)
    finally:
        elapsed = now()
        await p.stop(drain_timeout_s=0)
    return got, elapsed


async def check_ask_all(ask_all: AskAll) -> None:
    """Item 3: the replies in input order, all calls concurrent (total ~ the slowest one)."""
    messages = [f"问题 {i}" for i in range(5)]
    try:
        got, elapsed = await virtual(lambda: _run_ask_all(ask_all, messages))
    except Exception as exc:  # noqa: BLE001 - the student's code: report, never raise
        return _mark("3", False, f"你的函数抛出了 {type(exc).__name__}: {exc}")
    expected = [f"回复: {m}" for m in messages]
    if not isinstance(got, list) or sorted(map(str, got)) != sorted(expected):
        return _mark("3", False, f"应返回 5 条回复文本（result[\"response\"]）的列表，"
                     f"实际得到 {got!r}。")
    if got != expected:
        return _mark("3", False, "回复的顺序和问题的顺序不一致：按提交顺序收集结果，"
                     "而不是按完成顺序。")
    slowest = 0.5 * len(messages)
    if elapsed > slowest + 0.5:
        return _mark("3", False, f"用了 {elapsed:.1f} 秒，而最慢的一个调用只要 {slowest:.1f} 秒："
                     "你是一个一个等的。先全部提交，再用 asyncio.gather 一起等。")
    return _mark("3", True, f"5 条回复顺序正确，共用 {elapsed:.1f} 秒（最慢的调用 "
                 f"{slowest:.1f} 秒）。")


# -- 4 ------------------------------------------------------------------------------------
ERRORS: dict[str, type[AIError]] = {
    "429 请求过多 (RateLimitError)": RateLimitError,
    "1301 内容不安全 (ContentFilterError)": ContentFilterError,
    "503 服务过载 (OverloadedError)": OverloadedError,
    "1261 Prompt 超长 (ContextTooLongError)": ContextTooLongError,
    "500 服务器内部错误 (ServerError)": ServerError,
    "调用超时 (AITimeoutError)": AITimeoutError,
    "400 请求格式错误 (BadRequestError)": BadRequestError,
    "流式输出中途断开 (StreamInterruptedError)": StreamInterruptedError,
}


def check_classification(answers: dict[str, bool | None]) -> None:
    """Item 4: each error marked retryable (True) or permanent (False) as the package does."""
    if any(answers.get(name) is None for name in ERRORS):
        return _missing("4", "每个错误的判断（True = 可重试，False = 永久性错误）")
    wrong = [name for name, cls in ERRORS.items() if answers[name] != cls.retryable]
    if not wrong:
        return _mark("4", True, f"{len(ERRORS)} 个判断全部正确。")
    return _mark("4", False, f"{len(wrong)} 个判断不对：{', '.join(wrong)}。问自己："
                 "同样的请求过一会儿再发一次，结果可能不同吗？")


# -- 5 ------------------------------------------------------------------------------------
CURVE_LOAD: dict[str, Any] = {"tasks": 300, "rate": 5.0, "failure_rate": 0.0, "seed": 3}


_knee_curve: dict[int, float] = {}


async def throughput_curve(concurrencies: list[int]) -> dict[int, float]:
    """Steady throughput (tasks/s) at each concurrency, 5 requests/s offered."""
    curve = {}
    for c in concurrencies:
        r = await simulate_async(concurrency=c, **CURVE_LOAD)
        curve[c] = round(r.throughput["steady_per_s"] or 0.0, 2)
    return curve


async def check_knee(knee: int | None) -> None:
    """Item 5: the smallest concurrency reaching 95 % of the top throughput, within +-3
    (measured on its own grid around the knee, whatever grid the student swept)."""
    if knee is None:
        return _missing("5", " my_knee")
    if not _knee_curve:  # measured once: checking a second answer costs nothing
        _knee_curve.update(await throughput_curve([12, 14, 16, 18, 20, 24]))
    curve = _knee_curve
    top = max(curve.values())
    true_knee = min(c for c, t in curve.items() if t >= 0.95 * top)
    if abs(knee - true_knee) <= 3:
        return _mark("5", True, f"拐点约在 {true_knee} 个工人（吞吐量 {curve[true_knee]}/s，"
                     f"最高 {top}/s）。你的答案 {knee} 在误差范围内。")
    return _mark("5", False, f"你的答案 {knee} 离拐点太远。拐点是吞吐量刚好不再明显增长的地方；"
                 "用利特尔法则估一下：每秒 5 个请求 × 每次约 3 秒。")


# -- 6 ------------------------------------------------------------------------------------
def read_grade(timeout_s: float = 120.0) -> None:
    """Item 6: run `chatroom-async grade --json` and show the score of both exercises."""
    cmd = [sys.executable, "-m", "chatroom_async", "grade", "--json"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired:
        return _grade_unavailable(f"评分超过 {timeout_s:.0f} 秒仍未结束。")
    if done.returncode == 2 and "invalid choice" in done.stderr:
        return _grade_unavailable("你安装的 chatroom_async 还没有 grade 命令。")
    try:
        result = json.loads(done.stdout)
        earned, total = result["earned"], result["total"]
    except (ValueError, KeyError, TypeError):
        last = (done.stderr.strip().splitlines() or ["没有输出"])[-1]
        return _grade_unavailable(f"评分没有给出结果：{last}")
    for name, entry in result.get("exercises", {}).items():
        print(f"   练习 {name}: {entry['earned']}/{entry['total']}")
    return _mark("6", earned == total, f"练习总分 {earned}/{total}。"
                 + ("" if earned == total else "在 08、09 笔记本里完成练习，再运行 "
                    "`chatroom-async grade` 看每一项的提示。"))


def _grade_unavailable(reason: str) -> None:
    board[ITEMS[5]] = None
    print(f"⬜ 暂时无法读取练习成绩：{reason}完成 08、09 笔记本的练习后，在终端运行 "
          "`chatroom-async grade` 查看成绩。")


def summary() -> None:
    """The six items with their outcome."""
    for item, ok in board.items():
        print(("✅" if ok else "⬜" if ok is None else "❌"), item)
    print(f"完成 {sum(1 for ok in board.values() if ok)}/{len(board)}")
