"""A simulated LLM API standing in for Zhipu glm-4-flash: latency, faults, limits, streams.

Owns `SimulatedAIBackend`: the timing model (lognormal TTFT and decode speed, slowdown
under load), the provider's concurrency limit and RPM/TPM buckets, incidents, and the
backend's own counters. Every delay goes through the injected clock and every random draw
through a per-request RNG, so a virtual-time run replays exactly. It never retries, times
out or queues: those are the caller's job. Its settings live in `chatroom_async.sim_settings`
(re-exported here), one attempt's draws in `sim_call`, the fault model in `sim_faults`,
streams in `sim_stream`, and what the answers say in `chatroom_async.tokens`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from typing import Any

from ..backend import AIRequest
from ..clock import Clock, SystemClock
from ..errors import (
    AIError,
    BadRequestError,
    ContentFilterError,
    ContextTooLongError,
    RateLimitError,
    ServerError,
)
from .call import SimCall, request_max_tokens
from .faults import (
    LATE_KINDS,
    IncidentProcess,
    RateBucket,
    early_error,
    fault_bands,
    incident_bands,
    pick_fault,
)
from .settings import FAILURE_MIX, FAULT_KINDS, PROFILES, SimSettings, SimStats, check
from .stream import SimStream, StreamHost
from .tokens import PROMPT_OVERHEAD_TOKENS, estimate_tokens, prompt_text

__all__ = ["FAILURE_MIX", "FAULT_KINDS", "PROFILES", "SimSettings", "SimStats", "SimStream",
           "SimulatedAIBackend"]


class _Counters:
    """The backend's running counters; `SimStats` is their snapshot."""

    __slots__ = (
        "abandoned",
        "calls",
        "cancelled",
        "closed",
        "completed",
        "completion_tokens",
        "errors",
        "in_flight",
        "opened",
        "peak",
        "prompt_tokens",
    )

    def __init__(self) -> None:
        self.calls = self.completed = self.cancelled = self.prompt_tokens = 0
        self.completion_tokens = self.in_flight = self.peak = 0
        self.opened = self.closed = self.abandoned = 0
        self.errors: dict[str, int] = {}


class SimulatedAIBackend:
    """A simulated glm-4-flash: `complete()` and `stream()` with latency, faults and limits.

    Args:
        settings: the base settings (default: the realistic profile).
        seed: with a request's task_id and attempt, seeds everything random about it.
        clock: where time is read and slept (default `SystemClock()`); the virtual-time
            simulator passes a loop clock.
        on_first_token: called as `on_first_token(request, ttft_s)` once per attempt that
            gets its first token, by `complete()` and by a stream's first chunk, right
            after the TTFT wait: `ttft_s` is the time waited (load and incident included;
            0.0 without `simulate_latency`). Attempts rejected at admission, hung or hit by
            a server error never call it; one whose connection breaks later already has.
            It runs inside the call, so it must be quick and must not raise (what it
            raises propagates to the caller).
        **overrides: SimSettings fields replacing those of `settings`.

    Raises:
        TypeError: an override is not a SimSettings field.
        ValueError: a setting is out of range.
    """

    def __init__(self, settings: SimSettings | None = None, *, seed: int = 0,
                 clock: Clock | None = None,
                 on_first_token: Callable[[AIRequest, float], None] | None = None,
                 **overrides: Any) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.on_first_token = on_first_token
        self._n = _Counters()
        self._abandoned: list[bool] = []  # filled by SimStream.__del__, drained on next use
        self._host = _Host(self)
        self._manual_until = -math.inf
        self._manual = (0.5, 3.0)  # overload rate and latency factor of set_incident
        self._settings = settings if settings is not None else PROFILES["realistic"]
        self._apply(dataclasses.replace(self._settings, **overrides), fresh=True)

    @classmethod
    def from_profile(cls, name: str, *, seed: int = 0, clock: Clock | None = None,
                     on_first_token: Callable[[AIRequest, float], None] | None = None,
                     **overrides: Any) -> SimulatedAIBackend:
        """A backend with the settings of `PROFILES[name]` ("realistic", "instant", "flaky")."""
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; expected one of: {', '.join(PROFILES)}")
        return cls(PROFILES[name], seed=seed, clock=clock, on_first_token=on_first_token,
                   **overrides)

    @property
    def settings(self) -> SimSettings:
        """The current settings (frozen: change them with `update`)."""
        return self._settings

    def update(self, **changes: Any) -> SimSettings:
        """Replace some settings while running; the next call sees them. Returns the new ones.

        Raises:
            TypeError: a name is not a SimSettings field.
            ValueError: a value is out of range.
        """
        self._apply(dataclasses.replace(self._settings, **changes))
        return self._settings

    def _apply(self, new: SimSettings, fresh: bool = False) -> None:
        old, self._settings = self._settings, new
        self._bands = fault_bands(new.fault_rates())
        self._incident_bands = incident_bands(new, new.incident_overload_rate)
        self._manual_bands = incident_bands(new, self._manual[0])
        self._ttft_sigma = new.ttft_sigma()
        if fresh or (old.rpm, old.tpm) != (new.rpm, new.tpm):  # a new limit starts full
            self._rpm = RateBucket(new.rpm) if new.rpm is not None else None
            self._tpm = RateBucket(new.tpm) if new.tpm is not None else None
        if fresh or (old.incident_mean_gap_s, old.incident_mean_length_s) != (
                new.incident_mean_gap_s, new.incident_mean_length_s):
            self._markov: IncidentProcess | None = None  # restarted lazily: it needs clock.now()
        # Reading the clock costs; the instant profile never needs it.
        self._timed = (self._rpm is not None or self._tpm is not None
                       or new.incident_mean_gap_s is not None or self._manual_until > -math.inf)

    def set_incident(self, duration_s: float, overload_rate: float = 0.5,
                     latency_factor: float = 3.0) -> None:
        """Start an incident now for `duration_s` of clock time: more 503s, slower answers."""
        check(duration_s >= 0 and 0 <= overload_rate <= 1 and latency_factor > 0,
              "need duration_s >= 0, overload_rate in [0, 1] and latency_factor > 0")
        self._manual = (overload_rate, latency_factor)
        self._manual_bands = incident_bands(self._settings, overload_rate)
        self._manual_until = self.clock.now() + duration_s
        self._timed = True

    def clear_incident(self) -> None:
        """End a manual incident now (the Markov process, if configured, carries on)."""
        self._manual_until = -math.inf

    def incident_active(self) -> bool:
        """Whether an incident (manual or Markov) is on at the clock's current time."""
        return self._incident(self.clock.now()) is not None

    def _incident(self, now: float) -> tuple[tuple[tuple[float, str], ...], float] | None:
        """The fault bands and latency factor of the incident on at `now`, if any."""
        if now < self._manual_until:
            return self._manual_bands, self._manual[1]
        s = self._settings
        if s.incident_mean_gap_s is None:
            return None
        if self._markov is None:
            self._markov = IncidentProcess(self.seed, s.incident_mean_gap_s,
                                           s.incident_mean_length_s, now)
        return (self._incident_bands, s.incident_latency_factor) if self._markov.active(now) \
            else None

    def stats(self) -> SimStats:
        """A snapshot of the counters (streams dropped since the last call are counted now)."""
        self._drain_abandoned()
        n = self._n
        return SimStats(calls=n.calls, completed=n.completed, errors=dict(n.errors),
                        cancelled=n.cancelled, prompt_tokens=n.prompt_tokens,
                        completion_tokens=n.completion_tokens, in_flight=n.in_flight,
                        peak_in_flight=n.peak, streams_opened=n.opened, streams_closed=n.closed,
                        abandoned_streams=n.abandoned)

    def _drain_abandoned(self) -> None:
        # Finalizers only append (they may run in the middle of any bytecode); the counters
        # change here, at a known point.
        n = self._n
        while self._abandoned:
            n.abandoned += 1
            if self._abandoned.pop():
                n.in_flight -= 1

    def _count(self, kind: str) -> None:
        errors = self._n.errors
        errors[kind] = errors.get(kind, 0) + 1

    def _fail(self, kind: str, exc: AIError) -> AIError:
        self._count(kind)
        return exc

    async def complete(self, request: AIRequest) -> dict[str, Any]:
        """Answer after the TTFT and decode time (two clock sleeps), or raise an AIError.

        `on_first_token`, if set, is called between the two sleeps.

        Raises:
            RateLimitError: 1302 (concurrency limit or random), 1303 (RPM/TPM bucket); at once.
            OverloadedError: 503/1305, at once (more often during an incident).
            ServerError: 500 after the TTFT; 502/1234 when the connection breaks mid-answer;
                504 when a hang with a finite `hang_s` ends. A hang with `hang_s=None`
                never returns: only the caller's timeout or cancellation ends it.
            ContentFilterError, ContextTooLongError, BadRequestError: permanent, at once.
        """
        call = self._admit(request)
        try:
            await self._first_token(call)
            if call.kind == "stream_break":  # without a stream there is nothing partial to keep
                await self._decode(call, call.break_at)
                raise self._fail("stream_break", ServerError(
                    "1234 网络错误: peer closed connection without sending complete message body",
                    status=502, code="1234"))
            await self._decode(call, call.n_out - 1)
            return self._finish(call)
        except asyncio.CancelledError:
            self._n.cancelled += 1
            raise
        finally:
            self._n.in_flight -= 1

    def tokens_charged(self, request: AIRequest) -> int:
        """What a call counts against the tokens-per-minute limit, before it runs: the
        prompt and the most the answer may take (1 for a request it would reject)."""
        try:
            prompt = prompt_text(request.request_type, request.request_data)
            max_tokens = request_max_tokens(request.request_data, self._settings)
        except BadRequestError:
            return 1
        return estimate_tokens(prompt) + PROMPT_OVERHEAD_TOKENS + max_tokens

    def stream(self, request: AIRequest) -> SimStream:
        """The answer as an async iterator of chunks; admission happens on the first chunk.

        `on_first_token`, if set, is called after the TTFT, before the first chunk is
        returned.
        """
        self._n.opened += 1
        return SimStream(self._host, request)

    def _admit(self, request: AIRequest) -> SimCall:
        """Check, draw and admit one attempt, taking a slot; or raise a rejection."""
        n = self._n
        n.calls += 1
        if self._abandoned:
            self._drain_abandoned()
        s = self._settings
        call = self._plan(request, s)
        now = self.clock.now() if self._timed else 0.0
        incident = self._incident(now) if self._timed else None
        bands = self._bands if incident is None else incident[0]
        call.factor = 1.0 if incident is None else incident[1]
        call.kind = pick_fault(bands, call.u_fault) if bands else None
        self._check_limits(call, s, now)
        if call.kind is not None and call.kind not in LATE_KINDS:
            raise self._fail(call.kind, early_error(call.kind, s))
        n.in_flight += 1
        n.peak = max(n.peak, n.in_flight)
        return call

    def _plan(self, request: AIRequest, s: SimSettings) -> SimCall:
        try:
            prompt = prompt_text(request.request_type, request.request_data)
            max_tokens = request_max_tokens(request.request_data, s)
        except BadRequestError as exc:
            raise self._fail("bad_request", exc) from None
        if any(term in prompt for term in s.blocked_terms):
            raise self._fail("content_filter", ContentFilterError(
                "1301 系统检测到输入或生成内容可能包含不安全或敏感内容 (blocked term)"))
        prompt_tokens = estimate_tokens(prompt) + PROMPT_OVERHEAD_TOKENS
        if prompt_tokens > s.context_window:
            raise self._fail("context_too_long", ContextTooLongError(
                f"1261 Prompt 超长: {prompt_tokens} tokens, the context window is "
                f"{s.context_window}"))
        return SimCall(request, s, self.seed, prompt, prompt_tokens, max_tokens)

    def _check_limits(self, call: SimCall, s: SimSettings, now: float) -> None:
        n = self._n
        if s.max_concurrency is not None and n.in_flight >= s.max_concurrency:
            raise self._fail("concurrency_limit", RateLimitError(
                f"1302 您当前使用该API的并发数过高 ({n.in_flight} calls in flight, "
                f"limit {s.max_concurrency})", code="1302", retry_after=s.retry_after_s))
        rpm, tpm = self._rpm, self._tpm
        if rpm is None and tpm is None:
            return
        tokens = call.prompt_tokens + call.max_tokens  # charged up front, like OpenAI/Cerebras
        wait = max(rpm.shortfall_s(1, now) if rpm else 0.0,
                   tpm.shortfall_s(tokens, now) if tpm else 0.0)
        if wait > 0:
            raise self._fail("frequency_limit", RateLimitError(
                f"1303 请求频率过高 (rpm={s.rpm}, tpm={s.tpm}); retry in {wait:.3f} s",
                code="1303", retry_after=wait))
        if rpm:
            rpm.take(1)
        if tpm:
            tpm.take(tokens)

    async def _first_token(self, call: SimCall) -> None:
        """Wait out the TTFT (or hang); a server error strikes at its end; else tell the hook."""
        s = self._settings
        if call.kind == "hang":
            await self._hang(s)
        waited = 0.0
        if s.simulate_latency:
            u = (self._n.in_flight - 1) / s.soft_capacity  # the other calls in flight
            median = s.ttft_p50_s + s.prefill_s_per_1k_tokens * call.prompt_tokens / 1000.0
            ttft = median * math.exp(self._ttft_sigma * call.z_ttft) * (1.0 + 1.5 * u * u)
            waited = ttft * call.factor
            await self.clock.sleep(waited)
        if call.kind == "server_error":
            raise self._fail("server_error", ServerError("500 内部错误 (simulated server error)",
                                                         code="500"))
        if self.on_first_token is not None:
            self.on_first_token(call.request, waited)

    async def _decode(self, call: SimCall, tokens: int) -> None:
        """Sleep the time `tokens` more tokens take at the current load."""
        s = self._settings
        if tokens > 0 and s.simulate_latency:
            u = (self._n.in_flight - 1) / s.soft_capacity
            await self.clock.sleep(tokens * call.token_s * (1.0 + 0.8 * u) * call.factor)

    async def _hang(self, s: SimSettings) -> None:
        self._count("hang")  # counted when it begins: it may never end
        if s.hang_s is None:
            # No timer at all, not even a long one: only the caller's timeout ends it.
            await asyncio.get_running_loop().create_future()
        await self.clock.sleep(s.hang_s or 0.0)
        raise ServerError("504 gateway timeout: no answer", status=504, code="504")

    def _finish(self, call: SimCall) -> dict[str, Any]:
        result = call.result(self._settings.model)
        n = self._n
        n.completed += 1
        n.prompt_tokens += call.prompt_tokens
        n.completion_tokens += call.n_out
        return result


class _Host(StreamHost):
    """The backend as its streams see it: the `StreamHost` interface, nothing else."""

    __slots__ = ("_backend",)

    def __init__(self, backend: SimulatedAIBackend) -> None:
        self._backend = backend

    @property
    def model(self) -> str:
        return self._backend.settings.model

    def admit(self, request: AIRequest) -> SimCall:
        return self._backend._admit(request)

    async def first_token(self, call: SimCall) -> None:
        await self._backend._first_token(call)

    async def decode(self, call: SimCall, tokens: int) -> None:
        await self._backend._decode(call, tokens)

    def fail(self, kind: str, exc: AIError) -> AIError:
        return self._backend._fail(kind, exc)

    def finish(self, call: SimCall) -> dict[str, Any]:
        return self._backend._finish(call)

    def ended(self, *, holding: bool, cancelled: bool) -> None:
        n = self._backend._n
        n.closed += 1
        n.cancelled += cancelled
        if holding:
            n.in_flight -= 1

    def abandoned(self, holding: bool) -> None:
        # Finalizers only append; the counters change at the backend's next call or stats().
        self._backend._abandoned.append(holding)
