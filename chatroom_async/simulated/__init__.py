"""The simulated LLM API: a backend that behaves like a real provider, deterministically.

`SimulatedAIBackend` answers the three request types with plausible text after a latency
drawn from a profile, and fails the way real LLM APIs fail: rate limits (429 with
`retry_after`), overloads, server errors, hangs past the task's timeout, streams cut in the
middle, content filters, contexts too long. Every outcome is drawn from a generator seeded
by (seed, task id, attempt), never by scheduling order, so a run repeats exactly.

    backend.py   the backend: limits, counters, `complete` and `stream`
    settings.py  `SimSettings`, the profiles and the fault kinds
    call.py      one call's plan: its latency, tokens and text
    faults.py    which fault (if any) a call meets, and the error it raises
    stream.py    a streamed answer, chunk by chunk
    tokens.py    token estimates and the generated reply text
"""

from .backend import (
    FAILURE_MIX,
    FAULT_KINDS,
    PROFILES,
    SimSettings,
    SimStats,
    SimStream,
    SimulatedAIBackend,
)

__all__ = ["FAILURE_MIX", "FAULT_KINDS", "PROFILES", "SimSettings", "SimStats", "SimStream",
           "SimulatedAIBackend"]
