"""The Redis layer: stores, loads and blocks; decides nothing.

Every multi-key change is one Lua script from `lua/`, registered once per client and run
by EVALSHA. The same code runs on fakeredis (with lupa) and on a real Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from .keys import Keys
from .lane import Lane
from .reading import CorruptRecordError, count, garbage_entry, int_counts, number, score

_SCRIPTS = ("enqueue", "claim", "finish", "renew", "release", "cancel", "limit", "emit")
# The scripts that send events start with lua/stream.lua's two helpers.
_WITH_STREAM_LIB = ("finish", "release", "cancel", "emit")

# finish.lua then claim.lua in one call: a worker at full load records what ended and takes
# new tasks for the freed slots in one round trip. Each script body becomes a local function
# of its own KEYS and ARGV, so the two files stay the single source of each step.
_FINISH_CLAIM = """
local function finish(KEYS, ARGV)
{finish}
end
local function claim(KEYS, ARGV)
{claim}
end
local fk, ck, ca, fa = {{}}, {{}}, {{}}, {{}}
for i = 1, 7 do fk[i] = KEYS[i] end
for i = 8, 16 do ck[i - 7] = KEYS[i] end
for i = 1, 12 do ca[i] = ARGV[i] end
for i = 13, #ARGV do fa[i - 12] = ARGV[i] end
local recorded = finish(fk, fa)
return {{recorded, claim(ck, ca)}}
"""


def _load(name: str) -> str:
    """A script's source without comment lines and indentation.

    Kept short for the benefit of fakeredis's own script path, which compiles the source on
    every call (`embedded` compiles this package's scripts once); a real Redis caches the
    compiled script and does not care.
    """
    source = resources.files("chatroom_async.store").joinpath(f"lua/{name}.lua").read_text("utf-8")
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("--"))


#: Every script this package runs, by name: the files of `lua/` and their composition.
SOURCES: dict[str, str] = {
    name: (_load("stream") + "\n" if name in _WITH_STREAM_LIB else "") + _load(name)
    for name in _SCRIPTS}
SOURCES["finish_claim"] = _FINISH_CLAIM.format(finish=SOURCES["finish"], claim=SOURCES["claim"])


@dataclass(frozen=True, slots=True)
class Claimed:
    """A task a worker now holds. `token` proves the lease in every later call."""

    task_id: str
    spec: str
    priority: str
    max_retries: str
    retry_count: str
    deliveries: int
    token: str
    score: float  # its place in the ready set: lower runs first
    rate_limited: int = 0  # earlier attempts a provider's rate limit ended
    handed_back: int = 0  # earlier claims handed back by a stopping worker


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What one claim took, and the ready set as it left it.

    `head` is the first task left ready, as (score, task_id), the ready set's own order
    (lower scores first, equal scores by id); None when none is left.
    """

    claimed: list[Claimed]
    dead: list[str]
    next_due: float | None
    remaining: int = 0  # 1 if ready tasks are left after this claim, else 0
    head: tuple[float, str] | None = None
    now: float | None = None  # the time the claim used (`wait_then_claim`: the server's)
    # the server's clock when it ran the claim (not compared: two runs never agree on it)
    server_time: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one attempt, for `finish`. `fields` are written to the record."""

    task_id: str
    token: str
    kind: str  # "completed" | "failed" | "retry"
    fields: dict[str, str]
    event_json: str
    due: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Emit:
    """One event for `emit`: sent only while `token` is the task's lease (if not "")."""

    task_id: str
    token: str
    kind: str  # "event" | "end" (terminal) | "progress"
    attempt: int
    text: str  # a progress chunk's text, appended to the record's partial text
    envelope: str


@dataclass(frozen=True, slots=True)
class QueueCounts:
    ready_by_priority: dict[int, int]
    in_flight: int  # leased and running (`counts(now=...)`: the held ones not included)
    delayed: int
    dead_letters: int
    garbage: int
    counters: dict[str, float]
    #: the worker pools registered and alive (`counts(now=...)` only): (worker id, slots)
    workers: tuple[tuple[str, int], ...] = ()
    #: claimed tasks those pools hold for a slot (prefetch; `counts(now=...)` only)
    held: int = 0


class TaskQueue:
    """Queue operations over one namespace of one Redis.

    Args:
        redis: a `redis.asyncio.Redis` (or fakeredis) client with `decode_responses=True`.
        keys: the namespace's key names.
        result_ttl_s: how long a finished record stays readable.
        dead_letter_cap: the dead-letter list keeps the newest this many ids.
        stream_cap: a task's event stream keeps about the newest this many events.
        stream_ttl_s: how long a finished task's event stream stays (at most the record's).
    """

    def __init__(self, redis: Redis, keys: Keys, *, result_ttl_s: float = 3600.0,
                 dead_letter_cap: int = 10_000, stream_cap: int = 10_000,
                 stream_ttl_s: float = 600.0) -> None:
        self.redis = redis
        self.keys = keys
        self.result_ttl = max(1, int(result_ttl_s))
        self.dead_letter_cap = dead_letter_cap
        self.stream_cap = stream_cap
        self.stream_ttl = max(1, int(min(stream_ttl_s, result_ttl_s)))
        self._scripts = {name: redis.register_script(source) for name, source in SOURCES.items()}
        # One lane per hot caller: submitters, the fetcher (claims, and its blocking wait
        # on a lane of its own), the outbox.
        self._lanes = {name: Lane(redis) for name in ("enqueue", "claim", "wake", "finish")}
        self._enqueue_loaded = False  # SCRIPT LOAD done for enqueue_many's pipelines

    async def _run(self, script: str, lane: str, keys: list[str], args: list[Any]) -> Any:
        return await self._lanes[lane].run(self._scripts[script], keys, args)

    async def close(self) -> None:
        """Close the lanes' connections."""
        for lane in self._lanes.values():
            await lane.close()

    async def enqueue(self, task_id: str, spec: str, priority: int, max_retries: int,
                      score: float) -> bool:
        """Store a new task and make it ready. False if the id is taken."""
        k = self.keys
        done = await self._run("enqueue", "enqueue",
                               [k.task(task_id), k.ready, k.wake, k.stats, k.depth],
                               [task_id, spec, priority, max_retries, repr(score)])
        return bool(done)

    async def enqueue_many(self, items: list[tuple[str, str, int, int, float]]) -> list[bool]:
        """Enqueue (task_id, spec, priority, max_retries, score) items in one round trip."""
        script = self._scripts["enqueue"]
        k = self.keys
        for attempt in (1, 2):
            if attempt == 2 or not self._enqueue_loaded:  # EVALSHA in a pipeline needs it
                await self.redis.script_load(script.script)
                self._enqueue_loaded = True
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for task_id, spec, priority, max_retries, score in items:
                        pipe.evalsha(script.sha, 5, k.task(task_id), k.ready, k.wake, k.stats,
                                     k.depth, task_id, spec, priority, max_retries, repr(score))
                    return [bool(done) for done in await pipe.execute()]
            except NoScriptError:  # the server lost its scripts: nothing ran, load and retry
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def claim(self, *, now: float, lease_s: float, max_count: int, worker_id: str,
                    extra_deliveries: int, sweep: bool = True, starts: int | None = None,
                    reset_held: bool = False) -> ClaimResult:
        """Claim up to `max_count` ready tasks, after promoting due retries and reclaiming
        expired leases (skipped with `sweep=False`; `next_due` is then unknown).

        Given `starts`, the worker starts at most that many of them at once and holds the
        rest: they are added to its held count (`counts`), or with `reset_held` make it
        (see `worker/tally.py`)."""
        reply = await self._run("claim", "claim", self._claim_keys(),
                                self._claim_args(now, lease_s, max_count, worker_id,
                                                 extra_deliveries, sweep, starts, reset_held))
        return self._claim_result(reply, worker_id)

    async def wait_then_claim(self, *, worker_id: str, block_s: float, offset: float,
                              lease_s: float, max_count: int, extra_deliveries: int,
                              starts: int | None = None,
                              reset_held: bool = False) -> ClaimResult | None:
        """`wait_for_work`, then `claim`, in one round trip: the claim leaves behind the
        blocking wait on the same connection and the server runs it the moment the wait
        ends (a wake-up token, a control message or the timeout), on its own clock plus
        `offset` (this process's clock minus the server's, from an earlier claim's
        `server_time`), so the leases it grants are as long as `lease_s` however long the
        wait was; `starts` and `reset_held` as for `claim`. None when the wait could not
        start (nothing ran)."""
        block_s = max(0.001, round(block_s, 3))
        # The claim's own time is the server's: ARGV 1 and 2 only give the lease's length.
        args = self._claim_args(0.0, lease_s, max_count, worker_id, extra_deliveries, True,
                                starts, reset_held, offset=offset)
        reply = await self._lanes["wake"].blocking_then(
            ("BLPOP", self.keys.wake, self.keys.control(worker_id), repr(block_s)),
            self._scripts["claim"], self._claim_keys(), args, block_s=block_s)
        return None if reply is None else self._claim_result(reply, worker_id)

    def _claim_keys(self) -> list[str]:
        k = self.keys
        return [k.ready, k.inflight, k.delayed, k.wake, k.depth, k.dead, k.stats, k.garbage,
                k.held]

    def _claim_args(self, now: float, lease_s: float, max_count: int, worker_id: str,
                    extra_deliveries: int, sweep: bool, starts: int | None = None,
                    reset_held: bool = False, *, offset: float | None = None) -> list[Any]:
        return [repr(now), repr(now + lease_s), max_count, worker_id, self.keys.task_prefix,
                extra_deliveries, self.result_ttl, self.dead_letter_cap, "1" if sweep else "0",
                "" if offset is None else repr(offset), "" if starts is None else starts,
                "1" if reset_held else "0"]

    @staticmethod
    def _claim_result(reply: list[Any], worker_id: str) -> ClaimResult:
        claimed, dead, next_due, remaining, head_id, head_score, now, server = reply
        tasks = [
            Claimed(claimed[i], claimed[i + 1], claimed[i + 2], claimed[i + 3], claimed[i + 4],
                    int(claimed[i + 5]), f"{worker_id}:{claimed[i + 5]}", score(claimed[i + 6]),
                    int(claimed[i + 7]), int(claimed[i + 8]))
            for i in range(0, len(claimed), 9)
        ]
        return ClaimResult(tasks, list(dead), float(next_due) if next_due else None,
                           int(remaining), (score(head_score), head_id) if head_id else None,
                           float(now), float(server))

    async def finish(self, outcomes: list[Outcome], *, publish: bool = True,
                     started: list[Emit] | None = None, worker_id: str = "",
                     held: int = 0) -> list[bool]:
        """Record a batch of outcomes; each only if its lease is still held. The recorded
        ones' events go to their streams and, with `publish`, out in one message, after the
        `started` events (each sent only while its lease holds). `held` is added to the
        held count of `worker_id` in the same step (see `worker/tally.py`)."""
        recorded = await self._run("finish", "finish", self._finish_keys(publish),
                                   self._finish_args(outcomes, started, worker_id, held))
        return [bool(r) for r in recorded]

    async def finish_and_claim(self, outcomes: list[Outcome], *, publish: bool,
                               now: float, lease_s: float, max_count: int, worker_id: str,
                               extra_deliveries: int, sweep: bool = True,
                               started: list[Emit] | None = None, held: int = 0,
                               starts: int | None = None,
                               ) -> tuple[list[bool], ClaimResult]:
        """`finish`, then `claim` for the freed slots, atomically and in one round trip."""
        recorded, reply = await self._run(
            "finish_claim", "finish", self._finish_keys(publish) + self._claim_keys(),
            self._claim_args(now, lease_s, max_count, worker_id, extra_deliveries, sweep,
                             starts)
            + self._finish_args(outcomes, started, worker_id, held))
        return [bool(r) for r in recorded], self._claim_result(reply, worker_id)

    def _finish_keys(self, publish: bool) -> list[str]:
        k = self.keys
        return [k.inflight, k.delayed, k.wake, k.stats, k.dead, k.events if publish else "",
                k.held]

    def _finish_args(self, outcomes: list[Outcome], started: list[Emit] | None,
                     worker_id: str, held: int) -> list[Any]:
        started = started or []
        args: list[Any] = [self.result_ttl, self.keys.task_prefix, self.keys.stream_prefix,
                           self.dead_letter_cap, self.stream_cap, self.stream_ttl, worker_id,
                           held, len(started)]
        for e in started:
            args += [e.task_id, e.token, e.envelope]
        for o in outcomes:
            args += [o.task_id, o.token, o.kind, "" if o.due is None else repr(o.due),
                     repr(o.seconds), len(o.fields)]
            for name, value in o.fields.items():
                args += [name, value]
            args.append(o.event_json)
        return args

    async def emit(self, events: list[Emit], *, publish: bool = True,
                   lane: str | None = None) -> list[bool]:
        """Append events to their tasks' streams and (with `publish`) publish them: the
        lifecycle ones on the events channel, the progress ones on the progress channel.
        On `lane="finish"` they go in order with this worker's `finish` calls."""
        k = self.keys
        args: list[Any] = [k.task_prefix, k.stream_prefix, self.stream_cap, self.stream_ttl]
        for e in events:
            args += [e.task_id, e.token, e.kind, e.attempt, e.text, e.envelope]
        keys = [k.events, k.progress] if publish else ["", ""]
        if lane is not None:
            sent = await self._run("emit", lane, keys, args)
        else:
            sent = await self._scripts["emit"](keys=keys, args=args)
        return [bool(x) for x in sent]

    async def renew(self, leases: list[tuple[str, str]], deadline: float) -> list[str]:
        """Extend the given (task_id, token) leases to `deadline`; return the lost ids."""
        args: list[Any] = [repr(deadline), self.keys.task_prefix]
        for task_id, token in leases:
            args += [task_id, token]
        return list(await self._scripts["renew"](keys=[self.keys.inflight], args=args))

    async def release(self, leases: list[tuple[str, str, str]], *, publish: bool = True) -> int:
        """Put held tasks back in the ready set, given (task_id, token, task_handed_back
        envelope or "") triples; returns how many went back."""
        k = self.keys
        args: list[Any] = [k.task_prefix, k.stream_prefix, self.stream_cap]
        for triple in leases:
            args += triple
        return int(await self._scripts["release"](
            keys=[k.inflight, k.ready, k.wake, k.depth, k.stats, k.events if publish else ""],
            args=args))

    async def cancel(self, task_id: str, now: float, *, seen: tuple[str, str] | None = None,
                     envelope: str = "", publish: bool = True
                     ) -> tuple[int, str | None, dict[str, str]]:
        """Cancel wherever the task is, if it is still as read: `seen` is its (status,
        deliveries) then, `envelope` its task_cancelled event. Returns (1 done, 0 unknown
        or finished, 2 changed since read; the status; the record after)."""
        k = self.keys
        reply = await self._scripts["cancel"](
            keys=[k.task(task_id), k.ready, k.delayed, k.inflight, k.stats, k.depth, k.cancel,
                  k.stream(task_id), k.events if publish else ""],
            args=[repr(now), self.result_ttl, task_id, *(seen or ("", "")), self.stream_cap,
                  envelope, self.stream_ttl])
        if reply[0] != 1:
            return int(reply[0]), reply[1] if len(reply) > 1 else None, {}
        flat = reply[2]
        return 1, reply[1], dict(zip(flat[::2], flat[1::2], strict=True))

    async def last_cursor(self, task_id: str) -> int:
        """The cursor of the task's newest event (0 when it has none)."""
        last: Any = await self.redis.xrevrange(self.keys.stream(task_id), count=1)
        return int(str(last[0][0]).rpartition("-")[2]) if last else 0

    async def read_stream(self, task_id: str, after: int, count: int = 1000
                          ) -> list[tuple[int, str]]:
        """A task's events after cursor `after`, without blocking: (cursor, envelope)."""
        entries: Any = await self.redis.xrange(self.keys.stream(task_id), f"0-{after + 1}",
                                               "+", count=count)
        return [(int(str(eid).rpartition("-")[2]), str(fields["e"])) for eid, fields in entries]

    async def record(self, task_id: str) -> dict[str, str]:
        """The task's hash, empty if unknown.

        Raises:
            CorruptRecordError: the task's key holds something other than a hash.
        """
        try:
            fields = await self.redis.hgetall(self.keys.task(task_id))
        except ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            raise CorruptRecordError(f"corrupt task record {task_id!r}: its key holds "
                                     f"another type than a hash") from None
        return {str(k): str(v) for k, v in fields.items()}

    async def wait_for_work(self, worker_id: str, timeout_s: float) -> None:
        """Block until a wake-up token, a private control message or the timeout."""
        block_s = max(0.001, round(timeout_s, 3))
        await self._lanes["wake"].blocking("BLPOP", self.keys.wake, self.keys.control(worker_id),
                                           repr(block_s), block_s=block_s)

    async def poke(self, worker_id: str) -> None:
        """Wake one worker's blocking wait (used by stop)."""
        await self.redis.lpush(self.keys.control(worker_id), 1)

    async def counts(self, now: float | None = None) -> QueueCounts:
        """Queue depth by priority, in-flight, delayed, dead letters and shared counters;
        given `now`, also the worker pools whose registration holds at that time and the
        tasks they hold for a slot (prefetch), which are leased but not counted in flight
        (a pool killed without a stop is not alive, and its holds count as in flight until
        their leases expire)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.depth)
            pipe.zcount(k.inflight, "-inf", "(inf")  # not claim.lua's +inf anchor
            pipe.zcard(k.delayed)
            pipe.llen(k.dead)
            pipe.llen(k.garbage)
            pipe.hgetall(k.stats)
            if now is not None:
                pipe.zrangebyscore(k.workers, repr(now), "+inf")
                pipe.hgetall(k.held)
            replies = await pipe.execute(raise_on_error=False)
        depth, inflight, delayed, dead, garbage, stats = replies[:6]
        for reply in replies[:6]:  # the counts' own errors are raised, as before
            if isinstance(reply, Exception):
                raise reply
        alive, held = replies[6:] if now is not None else ([], {})
        if isinstance(alive, Exception):  # a workers key written by hand: no count
            alive = []
        workers = tuple(w for w in map(_worker_entry, alive) if w)
        held = held if isinstance(held, dict) else {}  # not a hash (by hand): none held
        holding = sum(count(held.get(worker_id)) for worker_id, _ in workers)
        return QueueCounts(
            ready_by_priority=int_counts(depth), in_flight=max(0, int(inflight) - holding),
            delayed=int(delayed), dead_letters=int(dead), garbage=int(garbage),
            counters={name: v for name, v in ((n, number(x)) for n, x in stats.items())
                      if v is not None},
            workers=workers, held=holding)

    async def adjust_held(self, worker_id: str, delta: int) -> None:
        """Add `delta` to the count of claimed tasks a worker pool holds for a slot
        (prefetch), where no call of its that changes its leases can carry it (see
        `worker/tally.py`)."""
        await self.redis.hincrby(self.keys.held, worker_id, delta)

    async def register_worker(self, worker_id: str, slots: int, *, now: float,
                              deadline: float) -> None:
        """Say that a worker pool with `slots` slots is alive until `deadline` (renewed
        with its leases); registrations past their deadline (pools killed without a stop)
        are dropped on the way."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(k.workers, "-inf", f"({now!r}")
            pipe.zadd(k.workers, {f"{worker_id} {slots}": deadline})
            await pipe.execute()

    async def unregister_worker(self, worker_id: str, slots: int) -> None:
        """A stopping worker pool is no longer counted (nor what it held)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.workers, f"{worker_id} {slots}")
            pipe.hdel(self.keys.held, worker_id)
            await pipe.execute()

    async def dead_letters(self, count: int = 100) -> list[str]:
        """The newest dead-lettered task ids, oldest first."""
        return [str(x) for x in await self.redis.lrange(self.keys.dead, -count, -1)]

    async def garbage(self, count: int = 100) -> list[dict[str, str]]:
        """The newest entries set aside as unusable, oldest first: `{"task_id", "reason"}`."""
        return [garbage_entry(raw) for raw in await self.redis.lrange(self.keys.garbage,
                                                                      -count, -1)]

    async def purge(self) -> int:
        """Delete every key of this namespace (tests and benchmarks clean up their own)."""
        deleted = 0
        async for key in self.redis.scan_iter(match=self.keys.pattern, count=1000):
            deleted += await self.redis.delete(key)
        return deleted


def _worker_entry(member: str) -> tuple[str, int] | None:
    """A `workers` member, "{worker_id} {slots}", as (worker id, slots); None if it is not
    one (written by hand)."""
    worker_id, _, slots = str(member).rpartition(" ")
    return (worker_id, int(slots)) if worker_id and slots.isdigit() else None
