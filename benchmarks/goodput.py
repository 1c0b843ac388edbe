"""Goodput under a provider's limits: chat requests at 1.5x what the provider allows.

    python -m benchmarks.goodput                    # all three modes, about 4 minutes
    python -m benchmarks.goodput --modes shared --seconds 30

One `chatroom-async sim-server` plays the provider over HTTP, with a requests-per-minute
limit and a concurrency limit, answering 429 past them (with Retry-After). Poisson arrivals
at 1.5x its request rate go to:
- `shared`: three `chatroom-async worker` processes with the provider's limits given
  (`--provider-rpm/--provider-concurrency`): every call waits its turn in Redis;
- `plain`: the same workers without them: a 429 is retried with backoff, as any job queue
  without a shared limiter does (arq, SAQ, Taskiq: retry on error);
- `cookbook`: the anchor, one process throttled to the announced limits the way the OpenAI
  cookbook's parallel request processor does (request and token buckets in memory, a 15 s
  pause after a 429, failed requests retried), with the same arrivals.
Before each mode the provider's request bucket is emptied (a burst of one-token requests),
so that the measured minute is the provider's steady rate, not the minute's burst its
bucket allows at start; the shared limiter is told the same (its bucket starts empty), and
so is the cookbook's.

Figures: completed requests per second in the steady window (from 10 s after the first
arrival to the last arrival) as a fraction of the provider's rate, 429s as a share of the
calls the provider saw, and p50/p95 latency of the requests that completed in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from benchmarks.envs import ensure_env
from benchmarks.redis_tools import delete_matching
from benchmarks.workers.goodput_common import (
    done_key,
    finished_key,
    go_key,
    message,
    sent_key,
)
from chatroom_async import AsyncAIProcessor

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "chatroom-async")
RPM = 600.0  # 10 requests a second
PROVIDER_CONCURRENCY = 100
WORKERS, SLOTS = 3, 50
WARMUP_S = 10.0
PEERS = ("arq", "saq", "taskiq")
MODES = ("shared", "plain", "cookbook", *PEERS)
#: one request's (submitted, completed or None, status), seconds from the first arrival
Result = tuple[float, float | None, str]
HORIZON_S = 30.0  # after the last arrival; what is unfinished then is not counted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def start_provider(seed: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [CLI, "sim-server", "--port", str(port), "--seed", str(seed), "--log-level", "warning",
         "--set", f"rpm={RPM}", "--set", f"max_concurrency={PROVIDER_CONCURRENCY}",
         "--set", "failure_rate=0", "--set", "soft_capacity=1000", "--set", "retry_after_s=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # a process we just started: its port opens once it has imported its code
        try:
            _get(base + "/v1/models")
            return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sim-server did not start") from None
            time.sleep(0.1)


def provider_stats(base: str) -> dict[str, Any]:
    return dict(_get(base + "/sim/stats")["backend"])


async def drain_provider_bucket(base: str) -> None:
    """Spend the provider's request bucket with one-token requests until it says 1303."""
    from openai import AsyncOpenAI, RateLimitError

    client = AsyncOpenAI(base_url=base + "/v1", api_key="sim", max_retries=0)
    empty = asyncio.Event()

    async def one() -> None:
        while not empty.is_set():
            try:
                await client.chat.completions.create(
                    model="glm-4-flash", max_tokens=1,
                    messages=[{"role": "user", "content": "hi"}])
            except RateLimitError as exc:
                if "1303" in str(exc):
                    empty.set()
    await asyncio.gather(*(one() for _ in range(PROVIDER_CONCURRENCY)))
    await client.close()


def arrivals(seconds: float, rate: float, seed: int) -> list[float]:
    rng, t, out = random.Random(seed), 0.0, list[float]()
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        out.append(t)


async def run_queue(mode: str, base: str, redis_url: str, plan: list[float]) -> list[Result]:
    """Our workers (with or without the shared limiter) and a submitting client."""
    ns = f"goodput-{uuid.uuid4().hex[:8]}"
    flags = ["--provider-rpm", str(RPM), "--provider-concurrency",
             str(PROVIDER_CONCURRENCY)] if mode == "shared" else []
    env = dict(os.environ, OPENAI_API_KEY="sim")
    workers = [subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
        [CLI, "worker", "--redis-url", redis_url, "--namespace", ns, "--backend", "openai",
         "--base-url", base + "/v1", "--model", "glm-4-flash", "--concurrency", str(SLOTS),
         "--drain", "0.1", *flags], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for _ in range(WORKERS)]
    client = AsyncAIProcessor(redis_url, max_workers=0, namespace=ns)
    await client.start()
    try:
        if mode == "shared":  # the limiter saw the warm-up burst too: its bucket is empty
            # (its request bucket is full again a minute from now: empty now)
            await client.redis.hset(f"{ns}:provider",  # type: ignore[union-attr]
                                    "r_tat", repr(time.time() + 60.0))
        await client.hear_others()
        return await _feed(client, plan)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
        await client.redis.delete(*[k async for k in client.redis.scan_iter(  # type: ignore
            match=f"{ns}:*")] or [f"{ns}:none"])
        await client.stop()


async def _feed(client: AsyncAIProcessor, plan: list[float]) -> list[Result]:
    start = time.monotonic()
    ids: list[tuple[str, float]] = []
    for i, at in enumerate(plan):
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        tid = await client.submit_task(i % 50 + 1, "chat_completion", {"message": message(i)},
                                       max_retries=8, timeout=60)
        ids.append((tid, time.monotonic() - start))
    horizon = plan[-1] + 30  # what is still queued then is not counted
    out: list[Result] = []
    for tid, submitted in ids:
        try:
            final = await client.wait_for_task(tid, timeout=max(0.1, start + horizon
                                                                - time.monotonic()))
        except Exception:  # noqa: BLE001 - unfinished at the horizon
            out.append((submitted, None, "unfinished"))
            continue
        done = final["completed_at"] - final["created_at"] + submitted \
            if final["status"] == "completed" else None
        out.append((submitted, done, final["status"]))
    return out


async def run_cookbook(base: str, plan: list[float]) -> list[Result]:
    """The anchor: the OpenAI cookbook's throttle in one process, on the same arrivals."""
    from openai import APIStatusError, AsyncOpenAI

    client = AsyncOpenAI(base_url=base + "/v1", api_key="sim", max_retries=0)
    capacity, stamp = 0.0, time.monotonic()  # drained, as the provider's
    last_429 = -1e9
    start = time.monotonic()
    queue: asyncio.Queue[tuple[int, float, int]] = asyncio.Queue()
    out: list[Result] = []
    pending: set[asyncio.Task[None]] = set()

    async def call(i: int, submitted: float, tries: int) -> None:
        nonlocal last_429
        try:
            await client.chat.completions.create(
                model="glm-4-flash", messages=[{"role": "user", "content": message(i)}])
            out.append((submitted, time.monotonic() - start, "completed"))
        except APIStatusError as exc:
            if exc.status_code == 429:
                last_429 = time.monotonic()
            if tries < 8:
                queue.put_nowait((i, submitted, tries + 1))
            else:
                out.append((submitted, None, "failed"))

    async def feed() -> None:
        for i, at in enumerate(plan):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            queue.put_nowait((i, at, 0))

    feeder = asyncio.create_task(feed())
    horizon = start + plan[-1] + 30
    while time.monotonic() < horizon and (not feeder.done() or not queue.empty() or pending):
        now = time.monotonic()
        capacity = min(RPM, capacity + (now - stamp) * RPM / 60.0)
        stamp = now
        if queue.empty() or capacity < 1 or now - last_429 < 15.0:
            await asyncio.sleep(0.001)  # the cookbook's loop: seconds_to_sleep_each_loop
            continue
        i, submitted, tries = queue.get_nowait()
        capacity -= 1
        task = asyncio.create_task(call(i, submitted, tries))
        pending.add(task)
        task.add_done_callback(pending.discard)
    for task in pending:
        task.cancel()
    await asyncio.gather(feeder, *pending, return_exceptions=True)
    await client.close()
    return out


async def run_peer(queue: str, base: str, redis_url: str, plan: list[float],
                   ready: Callable[[], Awaitable[None]]) -> list[Result]:
    """A peer's own workers (three, 50 jobs at once each) and its own client, in its own
    environment (`benchmarks/workers/goodput_<queue>.py`); their records read back here.
    `ready` (emptying the provider's bucket) runs once they are started, right before the
    first arrival, as it does right before ours' first submit."""
    ns = f"goodput-{queue}-{uuid.uuid4().hex[:8]}"
    python = str(ensure_env(queue, say=lambda line: print(line, file=sys.stderr)))
    module = f"benchmarks.workers.goodput_{queue}"
    common = ["--redis-url", redis_url, "--name", ns]
    plan_file = REPO / "benchmarks" / f".{ns}-plan.json"
    plan_file.write_text(json.dumps(plan))
    roles = [["worker", "--base-url", base, "--concurrency", str(SLOTS)]] * WORKERS
    roles += [["scheduler"]] if queue == "taskiq" else []
    roles += [["feed", "--plan", str(plan_file)]]
    logs = [tempfile.TemporaryFile() for _ in roles]  # noqa: SIM115 - closed below
    procs = [subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
        [python, "-m", module, *role, *common], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=log) for role, log in zip(roles, logs, strict=True)]
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        await ready()
        start = time.time()
        await redis.rpush(go_key(ns), repr(start))
        await _await_finished(redis, ns, len(plan), start + plan[-1] + HORIZON_S, procs)
        sent = await redis.hgetall(sent_key(ns))
        done = await redis.hgetall(done_key(ns))
    except BaseException:
        for role, log in zip(roles, logs, strict=True):
            log.seek(0)
            print(f"[{queue} {role[0]}] ...{log.read()[-1500:].decode(errors='replace')}",
                  file=sys.stderr)
        raise
    finally:
        for log in logs:
            log.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        plan_file.unlink(missing_ok=True)
        await delete_matching(redis, ns)
        await redis.aclose()
    out = []
    for i in range(len(plan)):
        at, _, status = str(done.get(str(i), " unfinished")).partition(" ")
        submitted = float(sent[str(i)]) - start if str(i) in sent else plan[i]
        out.append((submitted, float(at) - start if status == "completed" else None, status))
    return out


async def _await_finished(redis: Redis, ns: str, total: int, horizon: float,
                          procs: list[subprocess.Popen[bytes]]) -> None:
    """Block on the list the jobs push to until all have ended or the horizon passes (each
    wait under the client's 5 s socket timeout)."""
    ended = 0
    while ended < total and (left := horizon - time.time()) > 0:
        if procs[-1].poll() not in (None, 0):
            raise RuntimeError(f"the feeder failed (rc {procs[-1].returncode})")
        if await redis.blpop([finished_key(ns)], timeout=min(left, 1.0)):
            ended += 1


def figures(results: list[Result], plan: list[float], before: dict[str, Any],
            after: dict[str, Any]) -> dict[str, float]:
    lo, hi = WARMUP_S, plan[-1]
    done = sorted(d for _, d, s in results if s == "completed" and d is not None)
    in_window = [d for d in done if lo <= d <= hi]
    lat = sorted(d - s for s, d, st in results if st == "completed" and d is not None
                 and lo <= d <= hi)
    calls = after["calls"] - before["calls"]
    refused = sum(after["errors"].get(k, 0) - before["errors"].get(k, 0)
                  for k in ("concurrency_limit", "frequency_limit"))
    rate = RPM / 60.0
    return {"completed_per_s": len(in_window) / (hi - lo),
            "of_provider_limit": len(in_window) / (hi - lo) / rate,
            "calls": calls, "refused_429": refused,
            "refused_share": refused / calls if calls else 0.0,
            "p50_s": lat[len(lat) // 2] if lat else float("nan"),
            "p95_s": lat[int(len(lat) * 0.95)] if lat else float("nan"),
            "failed": sum(1 for _, _, s in results if s == "failed"),
            "unfinished": sum(1 for _, _, s in results if s == "unfinished")}


async def empty_provider(mode: str, base: str, before: dict[str, Any], plan: str) -> None:
    """Empty the provider's request bucket; note its counters then in `before`."""
    print(f"[{mode}] emptying the provider's request bucket", file=sys.stderr)
    await drain_provider_bucket(base)
    before.update(provider_stats(base))
    print(f"[{mode}] {plan}", file=sys.stderr)


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    plan = arrivals(args.seconds, 1.5 * RPM / 60.0, args.seed)
    table: dict[str, dict[str, float]] = {}
    for mode in args.modes.split(","):
        provider, base = start_provider(args.seed)
        try:
            before: dict[str, Any] = {}
            ready = functools.partial(empty_provider, mode, base, before,
                                      f"{len(plan)} requests over {args.seconds:.0f} s")
            if mode in PEERS:
                results = await run_peer(mode, base, args.redis_url, plan, ready)
            else:
                await ready()
                if mode == "cookbook":
                    results = await run_cookbook(base, plan)
                else:
                    results = await run_queue(mode, base, args.redis_url, plan)
            table[mode] = figures(results, plan, before, provider_stats(base))
            print(f"[{mode}] {json.dumps(table[mode])}", file=sys.stderr)
        finally:
            provider.terminate()
            provider.wait(timeout=30)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, from {', '.join(MODES)} (default all)")
    parser.add_argument("--seconds", type=float, default=60.0, help="arrivals last this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    table = asyncio.run(main_async(args))
    print(f"provider: {RPM:.0f} requests/min ({RPM / 60:.0f}/s), {PROVIDER_CONCURRENCY} calls "
          f"at once; arrivals 1.5x for {args.seconds:.0f} s; our workers: {WORKERS} x {SLOTS}")
    print("| mode | completed/s | of provider's rate | 429s / calls | p50 s | p95 s | failed "
          "| unfinished |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, f in table.items():
        print(f"| {mode} | {f['completed_per_s']:.2f} | {100 * f['of_provider_limit']:.1f} % | "
              f"{f['refused_429']:.0f} / {f['calls']:.0f} ({100 * f['refused_share']:.1f} %) | "
              f"{f['p50_s']:.1f} | {f['p95_s']:.1f} | {f['failed']:.0f} | "
              f"{f['unfinished']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rpm": RPM,
                                         "provider_concurrency": PROVIDER_CONCURRENCY,
                                         "seconds": args.seconds, "modes": table}, indent=1))


if __name__ == "__main__":
    main()
