"""How the namespace counts one pool's leases: in flight, or held for a slot (prefetch).

Redis has every lease of a pool in the in-flight set, but not which of them run: a held task
is leased and waits in the process for a slot. So each pool keeps a count in the `{ns}:held`
hash, and `get_stats()` shows a live pool's leases minus that count as in flight
(`TaskQueue.counts`). The pool never writes the count whole while it works: every change is
relative and rides, in the same atomic step, on a call that changes the pool's leases
anyway, so that what Redis shows in flight for the pool never exceeds its slots, however its
calls interleave, and is exact once they have returned:

- a claim is told how many of the tasks it takes may start at once (`reserve`: the slots the
  pool can promise it), and counts the rest as held in the same script;
- a held task that starts in the slot of a run whose outcome is not yet recorded stays
  counted as held ("unflipped") until the call that records an outcome counts it in flight
  (`plan`): that call removes a lease counted in flight, so the count does not rise;
- a held task that leaves (cancelled, reclaimed, handed back) after Redis removed its lease
  takes one off the count (`held_gone`): that restores what the removal took.

`counted` bounds from above what Redis counts in flight for the pool: increases are counted
when their call is sent, decreases when it has returned. Bookkeeping only: the outbox and the
fetcher send what it plans. A call that fails leaves the count unknown: the pool sets it
whole with the first claim it sends while it holds no task, runs no attempt and has no other
call under way (`resets`); until then the figure may be off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    """What one call of the outbox does to the pool's count.

    Attributes:
        held: added to the pool's held count, in the call's atomic step.
        starts: how many tasks its claim may start at once (None: it claims nothing).
        lower: leases counted in flight that the call removes.
    """

    held: int
    starts: int | None
    lower: int


class HeldTally:
    """The pool's side of its held count.

    Args:
        slots: the pool's concurrency.
        enabled: whether the pool may hold tasks at all (prefetch); when not, every
            method does nothing and claims start every task they take.
    """

    def __init__(self, slots: int, enabled: bool) -> None:
        self.slots, self.enabled = slots, enabled
        self.counted = 0  # leases Redis counts in flight for the pool, at most
        self.started = 0  # started runs whose lease Redis has, as far as the pool knows
        self.unflipped = 0  # of those, how many Redis still counts as held
        self.extra = 0  # held tasks Redis counts in flight (a claim expected them to start)
        self.gone = 0  # held leases Redis removed that the held count still includes
        self.calls = 0  # the outbox's calls under way
        self.dirty = False  # a call failed: the count is set whole when the pool is idle

    # -- claims ----------------------------------------------------------------------------
    def reserve(self, want: int) -> int | None:
        """How many tasks a claim for `want` may start at once (None when disabled)."""
        if not self.enabled:
            return None
        starts = max(0, min(want, self.slots - self.counted))
        self.counted += starts
        return starts

    def claimed(self, starts: int | None, got: int) -> None:
        """A claim that could start `starts` at once returned `got` tasks, all held now."""
        if starts is None:
            return
        counted = min(got, starts)
        self.counted -= starts - counted
        self.extra += counted
        # A held task counted in flight and a started one counted held are the same two
        # counts as the other way round: nothing to send.
        swap = min(self.extra, self.unflipped)
        self.extra -= swap
        self.unflipped -= swap

    def resets(self, idle: bool, ended: int) -> bool:
        """Whether the next claim sets the count whole (to what it holds of its own): after
        a failed call, once the pool holds no task and runs no attempt (`idle`), and the
        outbox has no call under way. `ended` runs wait for their outcomes to be recorded:
        from now on Redis counts them in flight, whichever of the claim and their outcomes'
        call comes first."""
        if not (self.enabled and self.dirty and idle and self.calls == 0):
            return False
        self.counted = self.started = ended
        self.unflipped = self.extra = self.gone = 0
        self.dirty = False
        return True

    # -- what happens in the pool ----------------------------------------------------------
    def start(self) -> None:
        """A held task starts (so does a corrupt record's failure: it ends like a run)."""
        if not self.enabled:
            return
        self.started += 1
        if self.extra:
            self.extra -= 1
        else:
            self.unflipped += 1

    def held_gone(self, count: int = 1) -> None:
        """`count` held tasks left the pool after Redis removed their leases."""
        if not self.enabled:
            return
        counted = min(count, self.extra)  # their removal took these from the count in flight
        self.extra -= counted
        self.counted -= counted
        self.gone += count - counted

    def run_gone(self) -> None:
        """A started run's lease left Redis with no outcome of the pool's (cancelled,
        reclaimed)."""
        if self.enabled and self._remove():
            self.counted -= 1

    def _remove(self) -> bool:
        """One started run's lease leaves; True if Redis counted it in flight (else the held
        count must come down by one to match)."""
        self.started -= 1
        if self.unflipped > self.started:
            self.unflipped -= 1
            self.gone += 1
            return False
        return True

    # -- the outbox's calls ----------------------------------------------------------------
    def pending(self) -> bool:
        """Whether a call on its own should carry a correction now."""
        return self.enabled and bool(self.gone or self.extra or
                                     (self.unflipped and self.counted < self.slots))

    def plan(self, removed: int = 0, places: int = 0) -> Plan:
        """A call that records `removed` outcomes (each a started run's lease) and claims
        for `places`: it carries every correction it can. Call `sent` when it returned,
        `failed` when it did not."""
        if not self.enabled:
            return Plan(0, None, 0)
        lower = sum(self._remove() for _ in range(removed))
        held, self.gone = -self.gone, 0
        held += self.extra  # held tasks counted in flight: counted held from now on
        lower, self.extra = lower + self.extra, 0
        flips = max(0, min(self.unflipped, self.slots - self.counted + lower))
        self.unflipped -= flips
        self.counted += flips
        held -= flips
        starts = None
        if places > 0:
            starts = max(0, min(places, self.slots - self.counted + lower))
            self.counted += starts
        self.calls += 1
        return Plan(held, starts, lower)

    def sent(self, plan: Plan, got: int = 0) -> None:
        """The call returned; its claim took `got` tasks."""
        if not self.enabled:
            return
        self.calls -= 1
        self.counted -= plan.lower
        self.claimed(plan.starts, got)

    def failed(self, plan: Plan | None = None) -> None:
        """A call failed: its effect on the count is unknown (what it would have raised
        stays counted, what it would have lowered too)."""
        if not self.enabled:
            return
        if plan is not None:
            self.calls -= 1
        self.dirty = True
