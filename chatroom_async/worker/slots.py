"""The slot ledger of one worker pool: which runs hold a slot (an attempt in progress) or a
place (an outcome not yet recorded), which claimed tasks wait for a slot (prefetch), and how
many more tasks claims may ask for.

Bookkeeping only: it starts nothing and talks to no server. The pool (`pool.py`), its
fetcher (`fetcher.py`) and its outbox (`outbox.py`) tell it what happened and ask it what is
free; `freed` is set whenever a slot or place frees.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..task import AITask


@dataclass(slots=True)
class Run:
    """One delivery of a task to this process, from its claim until its outcome settles."""

    task: AITask
    token: str
    score: float = 0.0  # its score in the ready set when claimed: lower runs first

    @property
    def rank(self) -> tuple[float, str]:
        """Its place in the ready set's order: by score, equal scores by id."""
        return self.score, self.task.task_id
    handle: asyncio.Task[None] | None = None
    submitted: bool = False  # its outcome went to the outbox
    released: bool = False  # its slot is free: the attempt ended (prefetch), or settled
    settled: bool = False  # its place is free: outcome settled, or the run ended
    lost: bool = False  # cancelled elsewhere or lease lost: record nothing, release nothing
    held: bool = False  # waited for a slot after its claim (prefetch)
    rate_limited: int = 0  # earlier attempts a provider's rate limit ended
    announced: asyncio.Future[None] | None = None  # done once its "started" event is out


class SlotLedger:
    """Slots and places of one pool.

    A slot is an attempt in progress: at most `concurrency`. A place is what a claim may
    take: a run holds one until its outcome is settled, a held task holds one, and a claim
    in flight holds as many as it asked for until its tasks are placed, so two claims never
    ask for one place; at most `concurrency + prefetch`, where `prefetch` is what the pool
    allows now (`allow_holds`: up to the configured number, or none). Without holds a run
    frees its slot and its place together, when it settles.

    Args:
        concurrency: attempts at once.
        prefetch: claimed tasks held, leased, beyond them, at most.
        holding: whether holds are allowed from the start.
    """

    def __init__(self, concurrency: int, prefetch: int, holding: bool = True) -> None:
        self.concurrency, self.limit = concurrency, prefetch
        self.prefetch = prefetch if holding else 0  # holds allowed now
        self.occupied = 0  # runs holding a slot
        self.placed = 0  # runs holding a place
        self.claiming = 0  # places promised to claims in flight
        self.held: list[Run] = []  # in the ready set's order: lowest score first
        self.freed = asyncio.Event()

    def free(self) -> int:
        """Places neither taken by a run or a held task nor promised to a claim."""
        return self.concurrency + self.prefetch - self.placed - len(self.held) - self.claiming

    def allow_holds(self, on: bool) -> None:
        """Allow holds (up to the configured number) or none; tasks held already stay held
        (the pool hands them back) and no claim asks for more while they exceed what is
        allowed."""
        allowed = self.limit if on else 0
        if allowed > self.prefetch:
            self.freed.set()  # a waiting fetcher may claim for the new places
        self.prefetch = allowed

    def slot_open(self) -> bool:
        return self.occupied < self.concurrency

    @contextmanager
    def claim(self, count: int) -> Iterator[None]:
        """Promise `count` places to a claim in flight, until its tasks are placed."""
        self.claiming += count
        try:
            yield
        finally:
            self.claiming -= count
            self.freed.set()  # fewer may have come back than asked for

    def occupy(self) -> None:
        """A run starts: it takes a slot and a place."""
        self.occupied += 1
        self.placed += 1

    def release(self, run: Run) -> bool:
        """Free a run's slot, once; True if it was freed now."""
        if run.released:
            return False
        run.released = True
        self.occupied -= 1
        self.freed.set()
        return True

    def settle(self, run: Run) -> bool:
        """Free a run's place, once (its slot must be freed too); True if freed now."""
        if run.settled:
            return False
        run.settled = True
        self.placed -= 1
        self.freed.set()
        return True

    def hold(self, run: Run) -> None:
        """Hold a claimed task in the order of the ready set it came from (the scheduler's
        score; equal scores by id, as Redis orders them), so a task claimed later but
        ordered ahead starts first."""
        run.held = True
        bisect.insort(self.held, run, key=lambda r: r.rank)

    def next_held(self, ahead: tuple[float, str] | None = None) -> Run | None:
        """The first held task, taken out of the holds; None if none, or if `ahead`, the
        (score, task_id) of a task known to be ready, comes before it in the ready set's
        order (that one is to be claimed and run first)."""
        if not self.held or (ahead is not None and ahead < self.held[0].rank):
            return None
        return self.held.pop(0)

    def take_held(self) -> list[Run]:
        """Every held task, taken out of the holds."""
        held, self.held = self.held, []
        return held

    def drop_held(self, task_id: str, token: str | None = None) -> bool:
        """Forget a held task (any delivery of it, or the one with `token`); True if held."""
        for i, run in enumerate(self.held):
            if run.task.task_id == task_id and token in (None, run.token):
                del self.held[i]
                self.freed.set()
                return True
        return False
