"""The held count's bookkeeping (`worker/tally.py`) against a model of what Redis keeps.

A pool with prefetch runs many steps in a seeded random order: claims by the fetcher and by
the outbox, attempts that end, outcomes recorded in batches, held and running tasks
cancelled elsewhere. The model applies each call to Redis's counts (the pool's leases and
its held count) at a random moment between its send and its reply, as two connections
would. Two things must hold: what Redis shows in flight for the pool never exceeds its
slots, and whenever no call is under way and nothing waits to be sent, Redis counts
exactly the pool's held tasks as held and its running ones in flight.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest

from chatroom_async.worker.tally import HeldTally, Plan


@dataclass
class Call:
    """A call sent and not yet answered: what Redis does when it runs it."""

    kind: str  # "claim" (the fetcher's) or "outbox"
    starts: int | None
    places: int
    removed: list[str] = field(default_factory=list)
    plan: Plan | None = None
    applied: bool = False
    claimed: list[str] = field(default_factory=list)


class Model:
    def __init__(self, rng: random.Random, slots: int, prefetch: int) -> None:
        self.rng, self.slots, self.prefetch = rng, slots, prefetch
        self.tally = HeldTally(slots, enabled=True)
        self.ids = (f"t{n}" for n in itertools.count())
        # Redis: the pool's leases and its held count
        self.leases: set[str] = set()
        self.redis_held = 0
        # the pool
        self.held: list[str] = []
        self.running: set[str] = set()
        self.ended: list[str] = []  # attempt over, slot free, outcome not yet recorded
        self.calls: list[Call] = []
        self.peak = 0

    # -- Redis -----------------------------------------------------------------------------
    def in_flight(self) -> int:
        return len(self.leases) - self.redis_held

    def check(self) -> None:
        self.peak = max(self.peak, self.in_flight())
        assert self.in_flight() <= self.slots

    def apply(self, call: Call) -> None:
        for task_id in call.removed:
            self.leases.discard(task_id)
        if call.plan is not None:
            self.redis_held += call.plan.held
        if call.places:
            got = self.rng.randint(0, call.places)
            call.claimed = [next(self.ids) for _ in range(got)]
            self.leases.update(call.claimed)
            assert call.starts is not None
            self.redis_held += max(0, got - call.starts)
        call.applied = True
        self.check()

    # -- the pool --------------------------------------------------------------------------
    def places(self) -> int:
        claiming = sum(c.places for c in self.calls)
        return (self.slots + self.prefetch - len(self.running) - len(self.ended)
                - len(self.held) - claiming)

    def fill(self) -> None:
        while self.held and len(self.running) < self.slots:
            self.running.add(self.held.pop(0))
            self.tally.start()

    def reply(self, call: Call) -> None:
        self.calls.remove(call)
        if call.kind == "claim":
            self.tally.claimed(call.starts, len(call.claimed))
        else:
            assert call.plan is not None
            self.tally.sent(call.plan, len(call.claimed))
        self.held.extend(call.claimed)
        self.fill()

    def quiet(self) -> bool:
        return not self.calls and not self.ended and not self.tally.pending()

    def step(self, busy: bool) -> None:
        """One thing happens: a send, a call running in Redis, a reply, an attempt's end,
        a cancel (the last two and new claims only while `busy`)."""
        moves = []
        fetching = any(c.kind == "claim" for c in self.calls)
        sending = any(c.kind == "outbox" for c in self.calls)
        if busy and not fetching and len(self.running) < self.slots and self.places() > 0:
            moves.append(self.fetch)
        if not sending and (self.ended or self.tally.pending()):
            moves.append(self.send)
        moves += [lambda c=c: self.apply(c) for c in self.calls if not c.applied]
        moves += [lambda c=c: self.reply(c) for c in self.calls if c.applied]
        if self.running:
            moves.append(self.end_attempt)
        if busy and self.held:
            moves.append(self.cancel_held)
        if busy and self.running:
            moves.append(self.cancel_running)
        if moves:
            self.rng.choice(moves)()
        self.check()

    def fetch(self) -> None:
        want = self.places()
        self.calls.append(Call("claim", self.tally.reserve(want), want))

    def send(self) -> None:
        batch, self.ended = self.ended[:10], self.ended[10:]
        places = self.rng.randint(0, self.places()) if self.rng.random() < 0.7 else 0
        plan = self.tally.plan(len(batch), places)
        self.calls.append(Call("outbox", plan.starts, places if plan.starts is not None else 0,
                               batch, plan))

    def end_attempt(self) -> None:
        task_id = self.rng.choice(sorted(self.running))
        self.running.remove(task_id)
        self.ended.append(task_id)
        self.fill()

    def cancel_held(self) -> None:
        task_id = self.rng.choice(self.held)
        self.leases.discard(task_id)  # Redis first; the pool hears of it after
        self.check()
        self.held.remove(task_id)
        self.tally.held_gone()

    def cancel_running(self) -> None:
        task_id = self.rng.choice(sorted(self.running))
        self.leases.discard(task_id)
        self.check()
        self.running.remove(task_id)
        self.tally.run_gone()
        self.fill()


@pytest.mark.parametrize("seed", range(40))
def test_redis_never_shows_more_in_flight_than_slots_and_is_exact_when_quiet(
        seed: int) -> None:
    rng = random.Random(seed)
    model = Model(rng, slots=rng.randint(1, 6), prefetch=rng.randint(1, 8))
    quiet_checks = 0
    for _ in range(3000):
        model.step(busy=True)
        if model.quiet():
            assert model.redis_held == len(model.held)
            assert model.in_flight() == len(model.running)
            quiet_checks += 1
    for _ in range(100_000):  # no new work: everything drains
        if model.quiet() and not model.running:
            break
        model.step(busy=False)
    assert model.quiet() and not model.running and not model.held
    assert (len(model.leases), model.redis_held) == (0, 0)
    assert quiet_checks > 0
    assert model.peak == model.slots  # the pool was full at times: the bound was tested


def test_a_claim_counts_held_only_what_cannot_start_at_once() -> None:
    tally = HeldTally(3, enabled=True)
    assert tally.reserve(8) == 3  # three slots free: three start, the rest are held
    tally.claimed(3, 2)  # only two came: the third slot is free again
    assert tally.counted == 2 and tally.reserve(8) == 1
    tally.claimed(1, 0)
    assert tally.counted == 2


def test_a_held_task_started_in_an_ended_runs_slot_is_counted_with_its_outcome() -> None:
    tally = HeldTally(1, enabled=True)
    tally.claimed(tally.reserve(3), 3)  # one counted in flight, two held
    tally.start()  # the first one runs
    tally.start()  # its attempt ended; a held one takes the slot before the outcome is out
    assert not tally.pending()  # no room to count it in flight yet
    plan = tally.plan(removed=1)
    assert plan == Plan(held=-1, starts=None, lower=1)  # in the call that records it
    tally.sent(plan)
    assert tally.counted == 1 and not tally.pending()


def test_a_failed_call_makes_the_next_idle_claim_set_the_count_whole() -> None:
    tally = HeldTally(2, enabled=True)
    tally.claimed(tally.reserve(4), 4)
    tally.start()
    tally.start()
    plan = tally.plan(removed=1)
    tally.failed(plan)
    assert not tally.resets(idle=False, ended=1)  # still busy: nothing is set whole
    assert tally.resets(idle=True, ended=1)  # one outcome not yet recorded
    assert (tally.counted, tally.started, tally.unflipped, tally.dirty) == (1, 1, 0, False)
    assert tally.reserve(3) == 1  # it keeps its slot until its outcome is recorded
    assert not tally.resets(idle=True, ended=0)  # once


def test_a_pool_without_prefetch_keeps_no_count() -> None:
    tally = HeldTally(2, enabled=False)
    assert tally.reserve(5) is None
    tally.claimed(None, 5)
    tally.start()
    tally.held_gone()
    assert tally.plan(removed=3, places=2) == Plan(0, None, 0) and not tally.pending()
