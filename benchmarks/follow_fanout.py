"""What following a streamed answer costs: Redis writes per answer, and the latency from the
backend's chunk to a follower in another OS process, for the first token and for all chunks,
for each coalescing interval.

This process runs the worker (one processor, `--tasks` slots); it streams `--tasks`
answers at once, `--rounds` times, each `--tokens` chunks at `--rate` chunks per second. A
second OS process (this script with `--follower`, its own interpreter, event loop and Redis
connections) follows every task with `processor.follow`, as a web server following a
user's answer would. The backend stamps each chunk when it yields it; the follower stamps
each progress event when `follow()` yields it, and every chunk in that event gets the
difference. Both stamps are `time.monotonic()`, which on Linux is CLOCK_MONOTONIC, one
clock for every process of the machine. "First token" is chunk 0 of each answer, the wait
a user sees before the answer starts; "all chunks" counts every chunk.

An answer starts streaming once the follower has seen its `task_started` event (the
follower reports it on its stdout), so that the first token measures delivery to a user
already waiting, not a late follow's replay; a real provider's time to first token leaves
that much time and more. Writes per answer are the task's progress events (each is one
script call: `XADD` to the task's stream, the record's partial text, a `PUBLISH`). A script
that prints figures, not a test. Run from the repository root:

    .venv/bin/python benchmarks/follow_fanout.py [--redis-url URL] [--tasks N]
        [--rounds R] [--tokens T] [--rate R] [--ttft S] [--intervals 0,0.05,0.1]
        [--json FILE] [--hops]

`--hops` also splits the first token's time into hops (backend yield -> progress write
called -> the follower's blocking XREAD returns -> `follow()` yields), by wrapping the
worker's write and the follower's read to stamp them: a diagnostic that adds a little work.

It writes only keys under its own namespace (`fanout-<hex>`) and deletes them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/follow_fanout.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.settings import DEFAULT_REDIS_URL, REPO_ROOT
from chatroom_async import AIRequest, AsyncAIProcessor, EventType, ProcessorSettings, StreamChunk
from chatroom_async.store.follow import FollowReader
from chatroom_async.store.keys import Keys
from chatroom_async.store.queue import TaskQueue
from chatroom_async.worker.attempt import Attempt

# (task_id, first chunk index, chunk count, arrival time) of one progress event.
Arrival = tuple[str, int, int, float]
_LINE_LIMIT = 1 << 26  # the follower's last line carries every arrival


class Paced:
    """Streams `tokens` chunks of two characters at `rate` per second, once the task's gate
    is open and a time to first token drawn from 0 to `ttft_s` has passed (seeded, so that
    the answers start spread out as real ones do); stamps each chunk as it yields it."""

    def __init__(self, tokens: int, rate: float, ttft_s: float, seed: int = 17) -> None:
        self.tokens, self.gap, self.ttft_s = tokens, 1.0 / rate, ttft_s
        self.rng = random.Random(seed)
        self.sent: dict[tuple[str, int], float] = {}
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, task_id: str) -> asyncio.Event:
        return self.gates.setdefault(task_id, asyncio.Event())

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        raise NotImplementedError

    async def stream(self, request: AIRequest) -> AsyncIterator[StreamChunk]:
        await self.gate(request.task_id).wait()
        loop = asyncio.get_running_loop()
        start = loop.time() + self.rng.uniform(0.0, self.ttft_s) - self.gap
        for i in range(self.tokens):
            await asyncio.sleep(max(0.0, start + (i + 1) * self.gap - loop.time()))
            last = i == self.tokens - 1
            self.sent[(request.task_id, i)] = time.monotonic()
            yield StreamChunk(i, "字" * 2, "stop" if last else None,
                              result={"response": "字" * 2 * self.tokens} if last else None)


# --- the follower process -------------------------------------------------------------


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def follow_one(client: AsyncAIProcessor, task_id: str, arrivals: list[Arrival]) -> None:
    """Follow a task to its end; say on stdout when it has started and ended, note each
    progress event."""
    async for event in client.follow(task_id):
        if event.type is EventType.TASK_PROGRESS:
            progress = event.task["progress"]
            arrivals.append((task_id, progress["index"], progress["count"], time.monotonic()))
        elif event.type is EventType.TASK_STARTED:
            say(f"started {task_id}")
    say(f"ended {task_id}")


async def follower_main(url: str, namespace: str, hops: bool) -> None:
    """Follow the tasks named on each stdin line until stdin closes; then print the
    arrivals as one JSON line."""
    arrivals: list[Arrival] = []
    woke: dict[str, float] = {}
    if hops:
        stamp_reads(woke)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with AsyncAIProcessor(url, max_workers=0, namespace=namespace) as client:
        follows = []
        while line := (await stdin.readline()).decode():
            follows += [asyncio.create_task(follow_one(client, task_id, arrivals))
                        for task_id in line.split()]
        await asyncio.gather(*follows)
    say("done " + json.dumps({"pid": os.getpid(), "arrivals": arrivals, "woke": woke}))


def stamp_reads(woke: dict[str, float]) -> None:
    """`--hops`: note when the follow reader's blocking XREAD returned each answer's first
    chunk (the moment its reply is handed on, right after the read's await resumes)."""
    deliver = FollowReader._deliver

    def stamped(self: FollowReader, reply: Any) -> None:
        now = time.monotonic()
        for key, entries in (reply.items() if isinstance(reply, dict) else reply or ()):
            if key == self.control:
                continue
            for _, fields in entries:
                raw = fields.get("e") if isinstance(fields, dict) else fields[1]
                data = json.loads(raw or "{}")
                if data.get("type") == "task_progress" and data["task"]["progress"]["index"] == 0:
                    woke[data["task_id"]] = now
        deliver(self, reply)

    FollowReader._deliver = stamped  # type: ignore[method-assign]


# --- the worker process (this one) ----------------------------------------------------


def stamp_writes(written: dict[str, tuple[float, float]]) -> None:
    """`--hops`: note when each answer's first progress write was called and returned."""
    write = Attempt._write

    async def stamped(self: Attempt, task: Any, token: str, progress: dict[str, Any]) -> None:
        called = time.monotonic()
        await write(self, task, token, progress)
        if progress["index"] == 0:
            written[task.task_id] = (called, time.monotonic())

    Attempt._write = stamped  # type: ignore[method-assign]


def hop_table(sent: dict[tuple[str, int], float], written: dict[str, tuple[float, float]],
              woke: dict[str, float], arrived: dict[str, float]) -> list[str]:
    """The first token's time split into hops, p50 / p99 / max each."""
    hops: dict[str, list[float]] = {
        "backend yield -> write call": [], "write call -> write returned": [],
        "write call -> follower's XREAD returns": [], "XREAD returns -> follow() yields": []}
    for task_id, at in arrived.items():
        t0, (t1, t2), t3 = sent[(task_id, 0)], written[task_id], woke[task_id]
        for name, gap in zip(hops, (t1 - t0, t2 - t1, t3 - t1, at - t3), strict=True):
            hops[name].append(gap)
    return [f"    {name:<40} " + " ".join(f"{q[k]:>8.2f}" for k in ("p50_ms", "p99_ms", "max_ms"))
            for name, gaps in hops.items() for q in [quantiles(gaps)]]


class FollowerProcess:
    """The follower process seen from here: it is told which tasks to follow; its reports
    open the tasks' gates and count the ended ones."""

    def __init__(self, proc: asyncio.subprocess.Process, backend: Paced) -> None:
        self.proc, self.backend = proc, backend
        self.ended: set[str] = set()
        self._changed = asyncio.Event()
        self.listening = asyncio.create_task(self._listen())

    async def follow(self, ids: list[str]) -> None:
        """Have the follower follow these tasks; return when it has seen them all end."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(ids) + "\n").encode())
        await self.proc.stdin.drain()
        while not self.ended.issuperset(ids):
            if self.listening.done():  # it stopped early: its error
                await self.listening
            self._changed.clear()
            await asyncio.wait({asyncio.ensure_future(self._changed.wait()), self.listening},
                               return_when=asyncio.FIRST_COMPLETED)

    async def finish(self) -> dict[str, Any]:
        """Close its stdin; its report once it has written it."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        report = await self.listening
        await self.proc.wait()
        return report

    async def _listen(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while line := (await self.proc.stdout.readline()).decode():
            word, _, rest = line.rstrip("\n").partition(" ")
            if word == "started":
                self.backend.gate(rest).set()
            elif word == "ended":
                self.ended.add(rest)
                self._changed.set()
            elif word == "done":
                result: dict[str, Any] = json.loads(rest)
                return result
        raise RuntimeError("the follower process ended without its figures")


def quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"p50_ms": values[len(values) // 2] * 1000,
            "p99_ms": values[min(len(values) - 1, int(len(values) * 0.99))] * 1000,
            "max_ms": values[-1] * 1000, "n": len(values)}


def summarise(arrivals: list[Arrival], sent: dict[tuple[str, int], float],
              answers: int) -> dict[str, Any]:
    first: list[float] = []
    every: list[float] = []
    for task_id, index, count, at in arrivals:
        for i in range(index, index + count):
            every.append(at - sent[(task_id, i)])
        if index == 0:
            first.append(at - sent[(task_id, 0)])
    return {"writes_per_answer": len(arrivals) / answers,
            "first": quantiles(first), "all": quantiles(every)}


async def run(args: argparse.Namespace, interval: float,
              written: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """One interval: `--rounds` rounds of `--tasks` answers, streamed and followed."""
    namespace = f"fanout-{uuid.uuid4().hex[:8]}"
    backend = Paced(args.tokens, args.rate, args.ttft)
    settings = ProcessorSettings(stream_coalesce_s=interval)
    request = {"user_id": 1, "request_type": "chat_completion",
               "request_data": {"message": "hi"}}
    async with AsyncAIProcessor(args.redis_url, max_workers=args.tasks, backend=backend,
                                namespace=namespace, settings=settings) as worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.follow_fanout",
            "--follower-hops" if args.hops else "--follower", args.redis_url, namespace,
            cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT)
        follower = FollowerProcess(proc, backend)
        try:
            for _ in range(args.rounds):
                await follower.follow(await worker.submit_many([request] * args.tasks))
            report = await follower.finish()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert worker.queue is not None
        await TaskQueue(worker.queue.redis, Keys(namespace)).purge()
    if report["pid"] == os.getpid():
        raise RuntimeError("the follower ran in the worker's process")
    arrivals = [(t, int(i), int(c), float(at)) for t, i, c, at in report["arrivals"]]
    answers = args.tasks * args.rounds
    result = {"interval_ms": interval * 1000, "tokens": args.tokens, "answers": answers,
              "worker_pid": os.getpid(), "follower_pid": report["pid"],
              **summarise(arrivals, backend.sent, answers)}
    if args.hops:
        arrived = {t: at for t, i, _, at in arrivals if i == 0}
        result["hops"] = hop_table(backend.sent, written, report["woke"], arrived)
    return result


def row(r: dict[str, Any]) -> str:
    f, a = r["first"], r["all"]
    return (f"{r['interval_ms']:>7.0f}ms {r['writes_per_answer']:>13.1f} "
            f"{f['p50_ms']:>8.1f} {f['p99_ms']:>8.1f} {f['max_ms']:>8.1f}  "
            f"{a['p50_ms']:>8.1f} {a['p99_ms']:>8.1f} {a['max_ms']:>8.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--tasks", type=int, default=20, help="answers streaming at once")
    parser.add_argument("--rounds", type=int, default=5, help="answers per slot")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="chunks per second")
    parser.add_argument("--ttft", type=float, default=1.0,
                        help="the backend's time to first token, drawn from 0 to this (s)")
    parser.add_argument("--intervals", default="0,0.05,0.1")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--hops", action="store_true",
                        help="also split the first token's time into hops (patches the "
                             "worker's write and the follower's read to stamp them)")
    args = parser.parse_args()
    print(f"{args.tasks} answers at once, {args.tasks * args.rounds} in all, {args.tokens} "
          f"chunks each at {args.rate:g}/s, on {args.redis_url}; follower in its own process")
    print(f"{'':>9} {'':>13} {'first token':^26}  {'all chunks':^26}")
    print(f"{'interval':>9} {'writes/answer':>13} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  "
          f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    results = []
    written: dict[str, tuple[float, float]] = {}
    if args.hops:
        stamp_writes(written)
    for interval in (float(x) for x in args.intervals.split(",")):
        r = await run(args, interval, written)
        results.append(r)
        print(row(r), flush=True)
        for line in r.get("hops", []):
            print(line, flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--follower", "--follower-hops"):
        asyncio.run(follower_main(sys.argv[2], sys.argv[3],
                                  hops=sys.argv[1] == "--follower-hops"))
    else:
        asyncio.run(main())
