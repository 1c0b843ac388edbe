"""Arrival processes for the simulator: when tasks arrive, and what each one asks for.

Pure: every draw comes from a `random.Random` seeded by the caller's seed and a purpose
label, so the arrival times do not change when only the request mix does, and the same
seed always yields the same plan. Nothing here touches a processor, a loop or a clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..task import TaskPriority

#: The arrival processes `arrival_times` knows.
ARRIVAL_KINDS = ("constant", "poisson", "bursty")

#: The default request mix: mostly chat, some summaries and translations.
DEFAULT_REQUEST_MIX: Mapping[str, float] = {
    "chat_completion": 0.7, "content_summary": 0.2, "translation": 0.1}

#: The default priority mix, by lowercase `TaskPriority` name.
DEFAULT_PRIORITY_MIX: Mapping[str, float] = {
    "low": 0.1, "normal": 0.6, "high": 0.25, "urgent": 0.05}

_MESSAGES = ("你好，请介绍一下异步处理机制。", "聊天室里的消息为什么需要排队？",
             "帮我写一句欢迎新成员的话。", "What is a task queue?",
             "如何避免接口限流导致的失败？", "Explain exponential backoff in one paragraph.")
_CONTENT = ("异步处理机制让聊天室在等待模型回复的同时继续服务其他用户。任务先进入队列，"
            "再由后台工作进程按优先级取出处理；失败的任务按指数退避重试，超时的调用被取消。")
_TEXTS = ("今天的讨论到此结束，感谢大家的参与。", "The meeting is moved to Friday afternoon.",
          "请在下周一之前提交你的练习。")
_LANGUAGES = ("en", "zh", "ja", "fr")


@dataclass(frozen=True, slots=True)
class Arrival:
    """One task of a simulation plan.

    Attributes:
        at: seconds after the start of the run.
        task_id: deterministic, "sim-000000" onwards.
        user_id: 1..users.
        request_type: one of the processor's request types.
        request_data: a valid request body for that type.
        priority: the task's priority.
    """

    at: float
    task_id: str
    user_id: int
    request_type: str
    request_data: dict[str, Any]
    priority: TaskPriority


def rng_for(seed: int, purpose: str) -> random.Random:
    """A generator for one purpose of one run (str seeds are hashed with SHA-512, unsalted)."""
    return random.Random(f"{seed}|{purpose}")


def arrival_times(kind: str, n: int, rate: float, rng: random.Random, *,
                  burstiness: float = 5.0) -> list[float]:
    """`n` non-decreasing arrival times, starting at 0, at a long-run `rate` per second.

    Args:
        kind: "constant" (every 1/rate s), "poisson" (exponential gaps), or "bursty" (bursts
            arrive as a Poisson process at rate/burstiness; each brings a geometric number
            of tasks at once, `burstiness` on average, so the long-run rate stays `rate`).
        n: how many.
        rate: tasks per second, > 0.
        rng: the draws' source.
        burstiness: mean burst size for "bursty" (>= 1; 1 is plain Poisson).
    """
    if kind == "constant":
        return [i / rate for i in range(n)]
    if kind == "poisson":
        return _cumulative(0.0, (rng.expovariate(rate) for _ in range(n - 1)))
    if kind == "bursty":
        return _bursts(n, rate, rng, burstiness)
    raise ValueError(f"unknown arrival process {kind!r}; expected one of {ARRIVAL_KINDS}")


def _cumulative(start: float, gaps: Any) -> list[float]:
    times = [start]
    t = start
    for gap in gaps:
        t += gap
        times.append(t)
    return times


def _bursts(n: int, rate: float, rng: random.Random, burstiness: float) -> list[float]:
    times: list[float] = []
    t = 0.0
    stay = 1.0 - 1.0 / burstiness  # P(the burst has another task): geometric, mean b
    while len(times) < n:
        size = 1
        while stay > 0 and rng.random() < stay:
            size += 1
        times.extend([t] * min(size, n - len(times)))
        t += rng.expovariate(rate / burstiness)
    return times


def request_for(request_type: str, rng: random.Random) -> dict[str, Any]:
    """A valid, short request body of `request_type`, drawn from small fixed pools."""
    if request_type == "chat_completion":
        return {"message": rng.choice(_MESSAGES)}
    if request_type == "content_summary":
        return {"content": _CONTENT}
    if request_type == "translation":
        return {"text": rng.choice(_TEXTS), "target_language": rng.choice(_LANGUAGES)}
    raise ValueError(f"unknown request type {request_type!r}")


def plan_arrivals(*, tasks: int, arrival: str, rate: float, burstiness: float,
                  request_mix: Mapping[str, float], priority_mix: Mapping[str, float],
                  users: int, seed: int) -> list[Arrival]:
    """The whole plan of a run: `tasks` arrivals in time order, reproducible from `seed`."""
    times = arrival_times(arrival, tasks, rate, rng_for(seed, "arrivals"),
                          burstiness=burstiness)
    mix = rng_for(seed, "mix")
    types = mix.choices(list(request_mix), cum_weights=_cum(request_mix.values()), k=tasks)
    names = mix.choices(list(priority_mix), cum_weights=_cum(priority_mix.values()), k=tasks)
    user_ids = [1 + int(mix.random() * users) for _ in range(tasks)]
    return [Arrival(at, f"sim-{i:06d}", user_ids[i], types[i], request_for(types[i], mix),
                    TaskPriority[names[i].upper()])
            for i, at in enumerate(times)]


def _cum(weights: Any) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def check_mix(name: str, mix: Mapping[str, float], known: tuple[str, ...]) -> None:
    """Raise ValueError unless `mix` maps known names to weights >= 0 with a positive sum."""
    unknown = sorted(set(mix) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown names {unknown}; expected some of {known}")
    values = list(mix.values())
    if not values or any(not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0)
                         for w in values) or sum(values) <= 0:
        raise ValueError(f"{name}: weights must be finite numbers >= 0 with a positive sum")
