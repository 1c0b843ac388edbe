"""Where a pickup's time goes: the benchmark's workload 4 (pickup latency), for ours and for
Taskiq's list broker, with a stamp in the worker where the task's message arrived.

One worker per queue (the benchmark's own worker module, 100 slots) runs tasks that stamp
the time their body starts; the submitter submits a task, waits for its stamp, and submits
the next at once (as workload 4 does). Per task it splits the time from "submit called" to
"body started" into:

* **submit call**: until the submit returned (the client's own work, the round trip, and the
  server's: for ours the enqueue script, and the claim that the enqueue's wake-up set off,
  which the server runs before it writes either reply);
* **message → body**: in the worker, from the moment the message (ours: the reply of the
  claim that rode behind the idle wait; Taskiq: the BRPOP's message) was read to the task
  body's first line;
* **total**: submit called → body started, the benchmark's figure.

Each part is given at p50 and p99 (the total at p95 too), to show which one a slow pickup
was slow in.

It also prints the worker's and the Redis server's CPU time per task, and for ours the
server time per EVALSHA (`INFO commandstats`; every script of the run, the enqueue, claim,
"started" event and finish of each task). Queues take turns, round after round, each in its
own venv (`benchmarks.envs`), and the medians of the rounds come last.

`--scripts` instead times ours' four scripts one by one, in this process: N cycles of
enqueue, claim, "started" event and finish, with `INFO commandstats` read around each call,
then each script's p50/p90/p98 server time and the distances (in script calls) between
calls slower than 2.5x their script's median: Redis steps Lua's garbage collector after
every 50 scripts.

A script that prints figures, not a test. Run from the repository root:

    .venv/bin/python benchmarks/pickup_anatomy.py [--queues ours,taskiq-list] [--tasks N]
        [--rounds R] [--redis-url URL]
    .venv/bin/python benchmarks/pickup_anatomy.py --scripts [--tasks N]

The worker is wrapped to stamp the message's arrival, which costs it a little. Keys: the
run's own (`pickup-<hex>`), deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import runpy
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/pickup_anatomy.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.settings import DEFAULT_REDIS_URL, REPO_ROOT, use_run_loop

ADAPTERS = {"ours": ("benchmarks.adapters.ours_adapter", "OursAdapter"),
            "taskiq-list": ("benchmarks.adapters.taskiq_list_adapter", "TaskiqListAdapter")}
WARMUP = 10


def wrap_worker(queue: str, argv: list[str]) -> None:
    """Run a benchmark worker module (`argv`: `-m module args...`) with the arrival of each
    task's message stamped beside the start of its body (the `stamp` kind)."""
    arrived = [0.0]
    if queue == "ours":
        from chatroom_async.store import lane

        blocking_then = lane.Lane.blocking_then

        async def stamped(self: Any, *args: Any, **kwargs: Any) -> Any:
            reply = await blocking_then(self, *args, **kwargs)
            arrived[0] = time.time()
            return reply

        lane.Lane.blocking_then = stamped  # type: ignore[method-assign]
    else:
        from taskiq_redis import redis_broker

        listen = redis_broker.ListQueueBroker.listen

        async def listened(self: Any) -> Any:
            async for message in listen(self):
                arrived[0] = time.time()
                yield message

        redis_broker.ListQueueBroker.listen = listened  # type: ignore[method-assign]
    from benchmarks import probe

    async def run_task(self: Any, index: int | None = None) -> None:
        now = time.time()
        await self.redis.rpush(f"{self.key}:stamps", f"{arrived[0]!r} {now!r}")

    probe.Probe.run_task = run_task  # type: ignore[method-assign]
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _server(client: Any) -> tuple[float, int, int]:
    """The server's CPU seconds, and its EVALSHA calls and microseconds so far."""
    cpu = await client.info("cpu")
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    return (cpu["used_cpu_sys"] + cpu["used_cpu_user"], int(stats.get("calls", 0)),
            int(stats.get("usec", 0)))


async def measure(queue: str, redis_url: str, tasks: int) -> dict[str, float]:
    """One round for one queue (in this interpreter): the medians and CPU figures."""
    import importlib

    import redis.asyncio as aioredis

    module, name = ADAPTERS[queue]
    adapter_cls = getattr(importlib.import_module(module), name)
    adapter = adapter_cls(redis_url, f"pickup-{uuid.uuid4().hex[:8]}")
    probe_key = f"{adapter.name}-probe"
    client = aioredis.Redis.from_url(redis_url)
    argv = adapter.worker_argv("stamp", 100, probe_key)
    worker = await asyncio.create_subprocess_exec(argv[0], __file__, "--wrap", queue, "--",
                                                  *argv[1:], cwd=REPO_ROOT)
    try:
        while not await client.hlen(f"{probe_key}:progress"):
            if worker.returncode is not None:
                raise RuntimeError(f"the {queue} worker exited with {worker.returncode}")
            await asyncio.sleep(0.05)
        await adapter.open()
        submit, stage, total = [], [], []
        cpu0, server0 = _cpu_s(worker.pid), await _server(client)
        for i in range(WARMUP + tasks):
            if i == WARMUP:
                cpu0, server0 = _cpu_s(worker.pid), await _server(client)
            called = time.time()
            await adapter.enqueue()
            returned = time.time()
            popped = await client.blpop([f"{probe_key}:stamps"], timeout=10)
            if popped is None:
                raise TimeoutError("a submitted task did not start within 10 s")
            arrived, started = map(float, popped[1].split())
            submit.append(returned - called)
            stage.append(started - arrived)
            total.append(started - called)
        cpu1, server1 = _cpu_s(worker.pid), await _server(client)
        await adapter.close()
    finally:
        if worker.returncode is None:
            worker.terminate()
        await worker.wait()
        keys = [key async for key in client.scan_iter(f"*{adapter.name}*")]  # probe's too
        for at in range(0, len(keys), 500):
            await client.delete(*keys[at:at + 500])
        await client.aclose()
    scripts = server1[1] - server0[1]
    parts = {name: statistics.quantiles([1000 * x for x in xs[WARMUP:]], n=100,
                                        method="inclusive")
             for name, xs in (("submit", submit), ("message_to_body", stage), ("total", total))}
    cuts = parts["total"]
    return {"submit_p50_ms": parts["submit"][49], "submit_p99_ms": parts["submit"][98],
            "message_to_body_p50_ms": parts["message_to_body"][49],
            "message_to_body_p99_ms": parts["message_to_body"][98],
            "total_p50_ms": cuts[49], "total_p95_ms": cuts[94], "total_p99_ms": cuts[98],
            "worker_cpu_us": 1e6 * (cpu1 - cpu0) / tasks,
            "redis_cpu_us": 1e6 * (server1[0] - server0[0]) / tasks,
            "evalsha_us": (server1[2] - server0[2]) / scripts if scripts else 0.0}


async def script_costs(redis_url: str, cycles: int) -> None:
    """Time ours' scripts one call at a time (see the module's docstring)."""
    import redis.asyncio as aioredis

    from benchmarks.settings import REQUEST_DATA, REQUEST_TYPE, USER_ID
    from chatroom_async.store.keys import Keys
    from chatroom_async.store.queue import Emit, Outcome, TaskQueue
    from chatroom_async.store.records import completed_fields

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    stats = aioredis.Redis.from_url(redis_url, decode_responses=True)

    async def usec() -> int:
        return int((await stats.info("commandstats")).get("cmdstat_evalsha", {}).get("usec", 0))

    queue = TaskQueue(client, Keys(f"pickup-{uuid.uuid4().hex[:8]}"))
    spec = json.dumps({"user_id": USER_ID, "request_type": REQUEST_TYPE,
                       "request_data": REQUEST_DATA, "timeout": 30.0, "created_at": time.time()})
    event = json.dumps({"type": "task_started", "task": {"request_data": REQUEST_DATA}})
    calls: list[tuple[str, int]] = []
    try:
        for i in range(cycles):
            task_id = f"t{i}"
            before = await usec()
            await queue.enqueue(task_id, spec, 2, 3, 1.0)
            after = await usec()
            calls.append(("enqueue", after - before))
            claimed = (await queue.claim(now=time.time(), lease_s=30, max_count=100,
                                         worker_id="w1", extra_deliveries=2)).claimed[0]
            before, after = after, await usec()
            calls.append(("claim", after - before))
            await queue.emit([Emit(task_id, claimed.token, "event", 1, "", event)],
                             lane="finish")
            before, after = after, await usec()
            calls.append(("started", after - before))
            fields = completed_fields(time.time(), '{"ok": true}', cached=False)
            await queue.finish([Outcome(task_id, claimed.token, "completed", fields, event)])
            before, after = after, await usec()
            calls.append(("finish", after - before))
    finally:
        keys = [key async for key in stats.scan_iter(f"{queue.keys.namespace}*")]
        for at in range(0, len(keys), 500):
            await stats.delete(*keys[at:at + 500])
        await queue.close()
        await client.aclose()
        await stats.aclose()
    settled = calls[len(calls) // 5:]  # the first fifth warms the server up
    medians = {}
    for name in ("enqueue", "claim", "started", "finish"):
        times = sorted(t for n, t in settled if n == name)
        medians[name] = times[len(times) // 2]
        print(f"{name:8s} server time p50 {medians[name]} µs, p90 {times[len(times) * 9 // 10]}"
              f" µs, p98 {times[len(times) * 98 // 100]} µs")
    slow = [i for i, (n, t) in enumerate(settled) if t > 2.5 * medians[n]]
    print(f"{len(slow)} calls slower than 2.5x their median; script calls between them: "
          f"{[b - a for a, b in zip(slow, slow[1:], strict=False)]}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--wrap"]:
        use_run_loop()
        wrap_worker(args[1], args[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", default="ours,taskiq-list")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--scripts", action="store_true",
                        help="time ours' four scripts one by one instead (--tasks cycles)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # one round of one queue, as JSON
    opts = parser.parse_args(args)
    if opts.scripts:
        asyncio.run(script_costs(opts.redis_url, opts.tasks))
        return 0
    if opts.one:
        use_run_loop()
        figures = asyncio.run(measure(opts.one, opts.redis_url, opts.tasks))
        print(json.dumps(figures))
        return 0
    from benchmarks.envs import ensure_env

    queues = opts.queues.split(",")
    rounds: dict[str, list[dict[str, float]]] = {q: [] for q in queues}
    for r in range(opts.rounds):
        for queue in queues:
            python = str(ensure_env(queue, lambda m: print(m, file=sys.stderr)))
            out = subprocess.run([python, __file__, "--one", queue, "--tasks", str(opts.tasks),
                                  "--redis-url", opts.redis_url], cwd=REPO_ROOT,
                                 capture_output=True, text=True, check=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            rounds[queue].append(figures)
            print(f"round {r + 1} {queue}: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                          figures.items()), flush=True)
    print("medians:")
    for queue, runs in rounds.items():
        print(f"  {queue}: " + ", ".join(f"{k} {statistics.median(run[k] for run in runs):.3f}"
                                         for k in runs[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
