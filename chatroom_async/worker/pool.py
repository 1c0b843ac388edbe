"""The worker pool of one process: up to N tasks in flight, claimed in batches, leases
renewed, outcomes recorded in batches, a graceful drain on stop.

Its `Fetcher` (`fetcher.py`) claims as many tasks as there are free slots in one script
call and blocks on Redis when there is nothing to do (no polling). Each claimed task runs as
its own asyncio task (the chapter's pool of coroutines; no thread pool, no second
semaphore). Outcomes go to the pool's `Outbox` (`outbox.py`), which records what finished
meanwhile, a few per script call, and, when the pool is full, claims new tasks for the freed
slots in the same call. Leases are renewed by its `LeaseKeeper` (`leases.py`).

Slots and places are counted by a `SlotLedger` (`slots.py`): the fetcher and the outbox
both claim, and neither may claim for a place the other is filling. With `prefetch` N > 0
the pool also holds up to N claimed, leased tasks, in the ready set's order; a run frees its
slot as soon as its attempt ends, and the next held task starts in that moment instead of
one claim round trip later, while the run keeps its place until its outcome is recorded.
The holds are renewed with the runs' leases, dropped when cancelled, handed back on stop,
and counted in the namespace apart from the tasks in flight by the very calls that claim,
record and release them (`tally.py`): `get_stats()` never shows a pool with more in flight
than its slots.
With `prefetch_below_s` the pool holds only while its attempts average under that time
(`_attempt_took`): a held task saves one round trip and may wait up to one attempt, so holds
pay for short tasks, not for AI calls of seconds. Once the average crosses it, the tasks
still held go back to the queue when the next attempt ends (`_hand_back_holds`): held
through long attempts they would keep a retry falling due, or a more urgent task, waiting
behind them, and no claim would sweep meanwhile. While every slot is busy the fetcher waits
and the outcomes' claims fill the places. The same average decides what comes first after
such a claim: the tasks it brought take their first step before the outbox's next call
when attempts wait on I/O, and the next call goes first when they are over at once
(`_START_FIRST_ABOVE_S`).

Priority stays strict with holds: every claim's reply names the first task it left in the
ready set (its head), and the pool keeps the head of its latest claim. A held task starts
only if that head does not come before it in the ready set's order (score, then id);
otherwise the slot waits for the claim that rides with the ended run's outcome (or the
fetcher's, when no outcome is on its way), and the best of what is held and what came back
starts. The guarantee: **a held task never starts ahead of a task ordered before it that was
ready when this worker's latest claim ran.** A task submitted after that claim may still
start after tasks already held, one for each slot that frees before the next claim's reply;
without prefetch the same holds for the tasks a claim in flight takes (a claim misses a task
submitted while it travels), but that window is one round trip, where a held task's is the
time since the worker's latest claim: under load a claim rides with every batch of
outcomes, so about a round trip too; in a pool whose runs all take long, as long as they
take.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
from collections.abc import Awaitable
from contextlib import aclosing
from typing import Any

import orjson

from ..clock import Clock
from ..errors import CorruptTaskError
from ..events import EventBus, EventType, envelope
from ..metrics import LocalMetrics
from ..settings import ProcessorSettings
from ..store.queue import Claimed, ClaimResult, Emit, Outcome, TaskQueue
from ..store.records import failed_fields, task_from_record, task_from_spec
from ..task import AITask, TaskStatus
from .attempt import Attempt
from .fetcher import Fetcher
from .leases import LeaseKeeper
from .loops import PatientLoop
from .outbox import Outbox
from .slots import Run, SlotLedger
from .tally import HeldTally

log = logging.getLogger("chatroom_async.worker")

# The weight of the latest attempt in the moving average of attempt times: about the last
# ten count, so a pool whose work turns from short to long stops holding within a few.
_MEAN_WEIGHT = 0.2

# Above this moving average of attempt times, tasks the outbox's call claimed take their
# first step before the outbox sends its next call; below it the next call goes first.
# Tasks that wait on I/O (an AI call, a sleep) only start a wait in that step, and starting
# them sooner gained 0.5-0.6 points of I/O efficiency (100 tasks of 0.1 s in flight,
# `benchmarks.run --workloads io`, alternating pairs: 97.0-97.1 % against 96.4-96.5 %).
# Tasks that run to their end in it (no-op) kept Redis idle meanwhile: no-op throughput
# fell by a quarter when every claim yielded.
_START_FIRST_ABOVE_S = 0.001


class WorkerPool:
    """Runs tasks of one namespace in this process.

    Args:
        queue: the Redis layer.
        attempt: runs one attempt of a task and says how it ended.
        bus: where events go.
        settings: leases, drain deadline, publishing.
        clock: time source (virtual under simulation).
        concurrency: tasks in flight at most.
        worker_id: unique among the namespace's workers.
        metrics: this process's latency and throughput samples.
    """

    def __init__(self, *, queue: TaskQueue, attempt: Attempt, bus: EventBus,
                 settings: ProcessorSettings, clock: Clock, concurrency: int, worker_id: str,
                 metrics: LocalMetrics) -> None:
        self.queue, self.attempt, self.bus = queue, attempt, bus
        self.settings, self.clock, self.metrics = settings, clock, metrics
        self.concurrency = concurrency
        self.worker_id = worker_id
        self.running: dict[str, Run] = {}
        self.slots = SlotLedger(concurrency, settings.prefetch,
                                holding=settings.prefetch_below_s is None)
        self._mean_attempt_s: float | None = None  # moving average of attempt times
        self._tasks: set[asyncio.Task[None]] = set()  # every run's task until it ends
        self.tally = HeldTally(concurrency, enabled=settings.prefetch > 0)
        self.outbox = Outbox(queue=queue, slots=self.slots, tally=self.tally,
                             settings=settings, clock=clock, origin=bus.origin,
                             worker_id=worker_id)
        self._stopping = False
        self.drained = 0  # runs that ended during stop()'s drain
        # The ready set's head as the latest claim left it, (score, task_id) or None, and
        # when that claim was made: a reply to an older call does not overwrite it.
        self._head: tuple[float, str] | None = None
        self._head_at = float("-inf")
        self.leases = LeaseKeeper(queue=queue, settings=settings, clock=clock,
                                  worker_id=worker_id, slots=concurrency,
                                  held=self._held_leases, lost=self._lost_lease)
        self.fetcher = Fetcher(queue=queue, slots=self.slots, tally=self.tally,
                               outbox=self.outbox, settings=settings, clock=clock,
                               worker_id=worker_id, take=self._take, dead=self._announce_dead)
        # Sends outcomes as they come; stopped only while it waits for some (`PatientLoop`).
        self._flusher = PatientLoop(self.outbox.wait, self._flush, "chatroom_async.flush")
        self._side_tasks: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        await self.leases.start()
        self.fetcher.start()
        self._flusher.start()

    # -- claimed tasks (from the fetcher or an outbox call) ---------------------------------
    def _take(self, result: ClaimResult, now: float) -> None:
        """What the fetcher's claim (made at `now`) brought: hold it, start what fits."""
        self._note_head(result, now)
        self._launch(result.claimed, now)

    def _note_head(self, result: ClaimResult, now: float) -> None:
        """Keep the ready set's head as the latest claim (made at `now`) left it."""
        if now >= self._head_at:
            self._head, self._head_at = result.head, now

    def _launch(self, claimed: list[Claimed], now: float) -> None:
        """Hold what a claim took, in the ready set's order, and start the first held tasks
        in the free slots (`_fill`). The claim's head is noted first (`_note_head`)."""
        for c in claimed:
            try:
                task = task_from_spec(c.task_id, c.spec, c.priority, c.max_retries,
                                      c.retry_count, c.deliveries)
            except ValueError as exc:
                self.tally.start()  # it ends as a run does, with an outcome
                self._reject_corrupt(c, str(exc), now)
                continue
            task.handed_back = c.handed_back
            run = Run(task, c.token, c.score, rate_limited=c.rate_limited)
            self._supersede(task.task_id)
            self.slots.hold(run)  # while stopping, stop() hands it back
        self._fill(now)

    def _fill(self, now: float) -> None:
        """Start held tasks in the free slots, first first, unless the latest claim left a
        task ready ahead of them (with prefetch: without, a claim fills only free slots, and
        each reply's head comes after what it claimed)."""
        ahead = self._head if self.settings.prefetch else None
        while self.slots.slot_open() and not self._stopping:
            run = self.slots.next_held(ahead)
            if run is None:
                break
            self._start(run, now)
        self.outbox.correct()

    def _drop_held(self, task_id: str, token: str | None = None) -> bool:
        """Forget a held task whose lease Redis no longer has (`SlotLedger.drop_held`)."""
        if not self.slots.drop_held(task_id, token):
            return False
        self.tally.held_gone()
        self.outbox.correct()
        return True

    def _supersede(self, task_id: str) -> None:
        """A task claimed again lost its earlier lease: an earlier delivery still held here
        is dropped, one still running stops (its slot frees when it has); neither can
        record anything now."""
        self._drop_held(task_id)
        earlier = self.running.get(task_id)
        if earlier is not None and not earlier.submitted:
            earlier.lost = True
            if earlier.handle is not None:
                earlier.handle.cancel()

    def _start(self, run: Run, now: float) -> None:
        run.task.started_at = now
        self.running[run.task.task_id] = run
        self.slots.occupy()
        self.tally.start()
        # The run first, the announcement after: the run's first step is then queued ahead
        # of the outbox's, and the task starts before the loop sends anything about it
        # (pickup p50 about 0.05 ms sooner in alternating runs; `run.announced` is set
        # below, before that first step reads it).
        run.handle = asyncio.create_task(self._run(run), name=f"task:{run.task.task_id}")
        self._tasks.add(run.handle)
        run.handle.add_done_callback(functools.partial(self._run_ended, run))
        if self.settings.publish_events:
            # Sent with the next batch of outcomes (in the same message, ahead of them) or
            # on their own when there is none: other processes hear "started" before
            # anything later about the task, and the runs do not wait.
            # (Its progress waits for it, to stay behind it in the task's stream.)
            # The event is built when it is sent, after the run's first step.
            run.announced = self.outbox.announce(functools.partial(self._started, run, now))

    def _started(self, run: Run, now: float) -> Emit:
        """The "started" event of a run that started at `now` (its task is not changed
        after that)."""
        return Emit(run.task.task_id, run.token, "event", run.task.deliveries, "",
                    envelope(EventType.TASK_STARTED, run.task, origin=self.bus.origin, ts=now))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        handle = asyncio.ensure_future(coro)
        self._side_tasks.add(handle)
        handle.add_done_callback(self._side_tasks.discard)

    def _envelope(self, event: EventType, task: AITask) -> str:
        return envelope(event, task, origin=self.bus.origin, ts=self.clock.now())

    def _reject_corrupt(self, c: Claimed, reason: str, now: float) -> None:
        """A record that does not parse fails at once and goes to the dead-letter list."""
        log.error("worker %s: %s; moved to the dead-letter list", self.worker_id, reason)
        # What is known of it; waiters and other processes still hear that it failed.
        task = AITask(task_id=c.task_id, user_id=0, request_type="", request_data={},
                      status=TaskStatus.FAILED, completed_at=now, deliveries=c.deliveries,
                      error_type=CorruptTaskError.__name__, error_message=reason)
        error = orjson.dumps({"error_type": CorruptTaskError.__name__,
                              "error_message": reason}).decode()
        outcome = Outcome(c.task_id, c.token, "failed",
                          failed_fields(now, error),
                          event_json=self._envelope(EventType.TASK_FAILED, task)
                          if self.settings.publish_events else "")
        self._spawn(self._fail_corrupt(outcome, task))

    async def _fail_corrupt(self, outcome: Outcome, task: AITask) -> None:
        if await self.outbox.submit(outcome):
            self.bus.fire(EventType.TASK_FAILED, task)

    async def _announce_dead(self, task_id: str) -> None:
        """Tell waiters and callbacks that the claim script failed a task (too many
        deliveries, or a record it set aside as corrupt)."""
        try:
            task = task_from_record(task_id, await self.queue.record(task_id))
        except (KeyError, ValueError) as exc:
            log.error("worker %s: task %s set aside: %s", self.worker_id, task_id, exc)
            task = AITask(task_id=task_id, user_id=0, request_type="", request_data={},
                          status=TaskStatus.FAILED, completed_at=self.clock.now(),
                          error_type="CorruptTaskError", error_message=str(exc))
        self.bus.fire(EventType.TASK_FAILED, task)
        if self.settings.publish_events:
            await self.queue.emit([Emit(task_id, "", "end", task.deliveries, "",
                                        self._envelope(EventType.TASK_FAILED, task))])

    # -- running ---------------------------------------------------------------------------
    async def _run(self, run: Run) -> None:
        task = run.task
        first_step = self.clock.now()  # the attempt's own time starts here, not at launch
        self.bus.fire(EventType.TASK_STARTED, task)  # here, not at launch: after earlier runs'
        # events
        try:
            outcome, event, final = await self.attempt.run(task, run.token, run.rate_limited,
                                                           run.announced)
            self._attempt_took(self.clock.now() - first_step)
            if run.held:  # the record has the claim's time; this is when it really started
                outcome.fields["started_at"] = repr(task.started_at)
            run.submitted = True
            if self.settings.prefetch:  # a held task may take the slot now
                self._release(run)
                if not self.slots.prefetch and self.slots.held and not self._stopping:
                    self._spawn(self._hand_back_holds())
            if await self.outbox.submit(outcome):
                if final.status is TaskStatus.COMPLETED:
                    self.metrics.record(now=final.completed_at or 0.0,
                                        latency=final.latency or 0.0,
                                        processing_time=final.processing_time or 0.0)
                self.bus.fire(event, final)
        except asyncio.CancelledError:
            pass  # stop() releases it, or it was cancelled/reclaimed elsewhere
        except Exception:
            log.exception("worker %s: task %s crashed the attempt", self.worker_id, task.task_id)

    def _attempt_took(self, seconds: float) -> None:
        """Note an attempt's time in the moving average; with prefetch, hold tasks only
        while attempts average under `prefetch_below_s` (a held task saves a round trip and
        may wait up to an attempt)."""
        mean = self._mean_attempt_s
        mean = seconds if mean is None else mean + _MEAN_WEIGHT * (seconds - mean)
        self._mean_attempt_s = mean
        below = self.settings.prefetch_below_s
        if below is not None and self.settings.prefetch:
            self.slots.allow_holds(mean < below)

    async def _hand_back_holds(self) -> int:
        """Give every held task back to the queue, unannounced and not held against its
        delivery limit; how many went back (0 if Redis could not be told: their leases
        expire and they run anyway). On stop, and when attempts grew long and holds are
        off: held, they would wait up to an attempt each for a slot while the ready set may
        get a task that is to run first (a retry falling due, a higher priority)."""
        held = self.slots.take_held()
        if not held:
            return 0
        try:
            back = await self.queue.release([(r.task.task_id, r.token, "") for r in held])
        except Exception as exc:  # noqa: BLE001 - best effort, as the docstring says
            log.error("worker %s: could not hand back %d held tasks: %r", self.worker_id,
                      len(held), exc)
            back = 0
            self.tally.failed()  # their leases stay until they expire
        else:
            self.tally.held_gone(len(held))
            self.outbox.correct()
        self.slots.freed.set()  # their places are free: a waiting fetcher looks again
        return int(back)

    def _run_ended(self, run: Run, handle: asyncio.Task[None]) -> None:
        """A run's task is done: a done callback, so that it also runs for a task cancelled
        before its first step (which never enters `_run`'s body)."""
        self._tasks.discard(handle)
        if self.running.get(run.task.task_id) is run:  # not a later delivery of the task
            del self.running[run.task.task_id]
        if run.lost:  # cancelled or reclaimed: its lease is gone and no outcome comes
            self.tally.run_gone()
            self.outbox.correct()
        elif not run.submitted:  # stopped, or a bug: its lease stays until it expires
            self.tally.failed()
        self.settle(run)

    def _release(self, run: Run) -> None:
        """Give a run's slot back, once: with prefetch when its attempt ends, else when it
        settles. The first held task, if any, takes the slot at once, unless a task ready
        ahead of it is known (`_fill`)."""
        if self.slots.release(run) and not self._stopping:
            self._fill(self.clock.now())

    def settle(self, run: Run) -> None:
        """Give a run's place and slot back, once: when its outcome is settled (its
        coroutine then only fires callbacks), or when it ends without one."""
        if self.slots.settle(run):
            self._release(run)

    def cancel_local(self, task_id: str) -> bool:
        """Stop a running or held task whose fate was decided elsewhere (cancelled,
        reclaimed)."""
        if self._drop_held(task_id):
            return True
        run = self.running.get(task_id)
        if run is None or run.handle is None or run.submitted:
            return False
        run.lost = True
        run.handle.cancel()
        return True

    # -- outcomes: the pool drives its outbox ----------------------------------------------
    async def _flush(self) -> None:
        """Record everything waiting; settle each call's runs, wake their coroutines, then
        start what the call claimed (in that order: events stay in order)."""
        async with aclosing(self.outbox.drain(self._places)) as calls:
            async for sent in calls:
                for outcome in sent.outcomes:
                    run = self.run_of(outcome)
                    if run is not None:
                        self.settle(run)
                sent.wake()
                if sent.claimed is not None:
                    await self.adopt(sent.claimed, sent.now)
                    mean = self._mean_attempt_s
                    if sent.claimed.claimed and mean is not None and mean > _START_FIRST_ABOVE_S:
                        # Let the tasks just claimed take their first step before the
                        # next call is packed and sent (`_START_FIRST_ABOVE_S`).
                        await asyncio.sleep(0)

    def _places(self, outcomes: list[Outcome]) -> int:
        """While the fetcher waits for a free place, a call that records outcomes claims for
        the places they free (and any free ones); otherwise it only records."""
        if not self.fetcher.full or self._stopping:
            return 0
        return self.slots.free() + sum(1 for o in outcomes if self.run_of(o) is not None)

    def run_of(self, outcome: Outcome) -> Run | None:
        """The run this outcome ends, if it still holds its place."""
        run = self.running.get(outcome.task_id)
        if run is None or run.token != outcome.token or run.settled:
            return None
        return run

    async def adopt(self, result: ClaimResult, now: float) -> None:
        """Run tasks the outbox claimed, unless stop() began meanwhile."""
        if self._stopping:
            if result.claimed:
                await self._quietly("hand back claimed tasks", self.queue.release(
                    [(c.task_id, c.token, "") for c in result.claimed]))
                self.tally.held_gone(len(result.claimed))  # unregistering drops the count
            return
        for task_id in result.dead:
            self._spawn(self._announce_dead(task_id))
        self._note_head(result, now)
        self._launch(result.claimed, now)

    # -- leases (renewed by `self.leases`) ------------------------------------------------
    def _held_leases(self) -> dict[str, str]:
        """The leases this pool holds: runs whose outcome is not yet submitted, held tasks."""
        leases = {tid: run.token for tid, run in self.running.items() if not run.submitted}
        leases.update((run.task.task_id, run.token) for run in self.slots.held)
        return leases

    def _lost_lease(self, task_id: str, token: str) -> None:
        """A renewal found this lease gone (reclaimed, cancelled): stop what it covered."""
        if self._drop_held(task_id, token):
            log.warning("worker %s: lost the lease of held %s", self.worker_id, task_id)
            return
        run = self.running.get(task_id)
        if run is not None and run.token == token:  # not a newer delivery
            log.warning("worker %s: lost the lease of %s", self.worker_id, task_id)
            self.cancel_local(task_id)

    # -- stopping --------------------------------------------------------------------------
    async def stop(self, drain_timeout_s: float) -> int:
        """Stop claiming, let running tasks finish up to the deadline, hand back the rest.

        Returns:
            How many unfinished tasks went back to the queue.
        """
        self._stopping = True
        await self.fetcher.stop()
        # Held tasks will not start now (nothing claims any more): back to the queue at once.
        early = await self._hand_back_holds()
        handles = list(self._tasks)
        if handles:
            done, _ = await asyncio.wait(handles, timeout=drain_timeout_s)
            self.drained = len(done)
        leftovers = [r for r in self.running.values() if not r.submitted and not r.lost]
        for handle in handles:
            handle.cancel()
        await asyncio.gather(*handles, return_exceptions=True)
        await self._flush()
        # If Redis is unreachable now, the leases expire and the tasks run again elsewhere.
        released = await self._quietly("hand back unfinished tasks", self.queue.release(
            [(r.task.task_id, r.token, self._handed_back(r.task)) for r in leftovers],
            publish=self.settings.publish_events))
        # The flusher and the renewer end now if they wait, else after their call; the
        # count of held tasks goes with the registration (`unregister`).
        await asyncio.gather(self.leases.stop(), self._flusher.stop(), *self._side_tasks,
                             return_exceptions=True)
        await self._quietly("clean up", self.queue.redis.delete(
            self.queue.keys.control(self.worker_id)))
        await self._quietly("unregister", self.leases.unregister())
        return early + int(released or 0)

    def _handed_back(self, task: AITask) -> str:
        """The task_handed_back envelope of a run this worker started and gives back."""
        if not self.settings.publish_events:
            return ""
        back = task.copy(status=TaskStatus.PENDING, handed_back=task.handed_back + 1)
        self.bus.fire(EventType.TASK_HANDED_BACK, back)
        return self._envelope(EventType.TASK_HANDED_BACK, back)

    async def _quietly(self, what: str, call: Awaitable[Any]) -> Any:
        """Await a best-effort step of stop(): log a failure instead of raising it."""
        try:
            return await call
        except Exception as exc:  # noqa: BLE001 - stop() must finish
            log.error("worker %s: could not %s while stopping: %r", self.worker_id, what, exc)
            return None


def make_worker_id(rng: random.Random, host: str, pid: int) -> str:
    """A worker id unique across hosts, processes and restarts; the host name keeps only
    letters, digits and `_.-` (it names a key and goes into events)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", host)[:64] or "host"
    return f"{host}-{pid}-{rng.getrandbits(32):08x}"
