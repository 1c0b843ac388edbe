"""A simulated LLM API standing in for Zhipu glm-4-flash: latency, faults, limits, streams.

Owns the timing model (lognormal TTFT and decode speed, slowdown under load), fault
injection, the provider's concurrency limit and RPM/TPM buckets, streams, and the backend's
own counters. Every delay goes through the injected clock and every random draw through a
per-request RNG, so a virtual-time run replays exactly. It never retries, times out or
queues: those are the caller's job. What the answers say lives in `chatroom_async.tokens`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Self

from .backend import AIRequest, StreamChunk
from .clock import Clock, SystemClock
from .errors import (
    AIError,
    BadRequestError,
    ContentFilterError,
    ContextTooLongError,
    OverloadedError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from .tokens import (
    PROMPT_OVERHEAD_TOKENS,
    build_result,
    estimate_tokens,
    filler,
    prompt_text,
    reply_in_chinese,
)

#: The random fault kinds, in the order their probability bands are laid out on [0, 1).
FAULT_KINDS = ("rate_limit", "overloaded", "server_error", "hang", "stream_break",
               "content_filter", "context_too_long")

#: How `SimSettings.failure_rate` is split between the kinds (the shares sum to 1).
FAILURE_MIX: Mapping[str, float] = MappingProxyType({
    "rate_limit": 0.30, "overloaded": 0.25, "server_error": 0.20, "stream_break": 0.15,
    "hang": 0.04, "content_filter": 0.03, "context_too_long": 0.03,
})

_LATE_KINDS = frozenset({"server_error", "hang", "stream_break"})  # fire after admission
_Z99 = 2.326  # the standard normal's 99th percentile: sigma = ln(p99 / p50) / 2.326


@dataclass(frozen=True, kw_only=True, slots=True)
class SimSettings:
    """Everything the simulated backend does, with the realistic (glm-4-flash) defaults.

    Attributes:
        model: the model name reported in results.
        simulate_latency: False skips every sleep (TTFT and decode): the instant profile.
        ttft_p50_s, ttft_p99_s: the lognormal time to first token of a short prompt.
        prefill_s_per_1k_tokens: TTFT added per 1,000 prompt tokens.
        output_tps_p50, output_tps_sigma: per-request decode speed, lognormal (tokens/s).
        output_tokens_p50, output_tokens_sigma: answer length, lognormal, clipped to
            max_tokens (finish_reason "length"). Translations follow the source length.
        max_tokens: the output cap when request_data has no "max_tokens".
        context_window: prompts with more tokens fail with ContextTooLongError (1261).
        soft_capacity: in-flight calls at which TTFT is x2.5 and per-token time x1.8:
            TTFT x(1 + 1.5u^2), per-token x(1 + 0.8u), u = other calls in flight / this.
        max_concurrency: calls in flight beyond this are rejected at once (429/1302);
            None for no limit.
        rpm, tpm: requests / tokens per minute, continuous-refill buckets (429/1303);
            a call is charged prompt + max_tokens tokens at admission. None = no limit.
        retry_after_s: sent as `retry_after` on 1302 and random 429s (None: not sent,
            Zhipu's behaviour). 1303 rejections always say when the bucket will refill.
        rate_limit_rate ... context_too_long_rate: probability per attempt of each fault.
        failure_rate: if set, replaces the seven per-kind rates by
            failure_rate * FAILURE_MIX[kind], so one slider sets the total fault rate.
        hang_s: how long a hung call waits before a 504; None hangs until cancelled.
        blocked_terms: a prompt containing one fails with ContentFilterError (1301).
        incident_overload_rate, incident_latency_factor: the overload probability and the
            latency multiplier while an incident is on.
        incident_mean_gap_s, incident_mean_length_s: set the gap to run a Markov on/off
            incident process on the clock (exponential gaps and lengths); None = manual only.
    """

    model: str = "glm-4-flash"
    simulate_latency: bool = True
    ttft_p50_s: float = 0.45
    ttft_p99_s: float = 1.8
    prefill_s_per_1k_tokens: float = 0.025
    output_tps_p50: float = 70.0
    output_tps_sigma: float = 0.25
    output_tokens_p50: float = 150.0
    output_tokens_sigma: float = 0.6
    max_tokens: int = 1024
    context_window: int = 128_000
    soft_capacity: float = 5.0
    max_concurrency: int | None = 5
    rpm: float | None = None
    tpm: float | None = None
    retry_after_s: float | None = None
    rate_limit_rate: float = 0.0
    overloaded_rate: float = 0.01
    server_error_rate: float = 0.005
    hang_rate: float = 0.003
    stream_break_rate: float = 0.01
    content_filter_rate: float = 0.0
    context_too_long_rate: float = 0.0
    failure_rate: float | None = None
    hang_s: float | None = None
    blocked_terms: tuple[str, ...] = ("[BLOCK]",)
    incident_overload_rate: float = 0.5
    incident_latency_factor: float = 3.0
    incident_mean_gap_s: float | None = None
    incident_mean_length_s: float = 15.0

    def __post_init__(self) -> None:
        rates = [f"{kind}_rate" for kind in FAULT_KINDS] + ["failure_rate",
                                                             "incident_overload_rate"]
        for name in rates:
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if sum(self.fault_rates().values()) > 1.0 + 1e-9:
            raise ValueError("the fault rates add up to more than 1")
        _check(0 < self.ttft_p50_s <= self.ttft_p99_s, "need 0 < ttft_p50_s <= ttft_p99_s")
        _check(self.output_tps_p50 > 0 and self.output_tokens_p50 >= 1,
               "output_tps_p50 must be > 0 and output_tokens_p50 >= 1")
        _check(min(self.output_tps_sigma, self.output_tokens_sigma,
                   self.prefill_s_per_1k_tokens) >= 0, "sigmas and prefill must be >= 0")
        _check(self.max_tokens >= 1 and self.context_window >= 1 and self.soft_capacity > 0,
               "max_tokens, context_window and soft_capacity must be positive")
        for name in ("max_concurrency", "rpm", "tpm", "incident_mean_gap_s"):
            _check(getattr(self, name) is None or getattr(self, name) > 0, f"{name} must be > 0")
        for name in ("retry_after_s", "hang_s"):
            _check(getattr(self, name) is None or getattr(self, name) >= 0, f"{name} must be >= 0")
        _check(self.incident_latency_factor > 0 and self.incident_mean_length_s > 0,
               "incident_latency_factor and incident_mean_length_s must be > 0")
        _check(isinstance(self.blocked_terms, tuple), "blocked_terms must be a tuple of str")

    def fault_rates(self) -> dict[str, float]:
        """The probability per attempt of each fault kind, after `failure_rate`."""
        if self.failure_rate is not None:
            return {kind: self.failure_rate * FAILURE_MIX[kind] for kind in FAULT_KINDS}
        return {kind: getattr(self, f"{kind}_rate") for kind in FAULT_KINDS}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


#: Named settings for `SimulatedAIBackend.from_profile`.
PROFILES: Mapping[str, SimSettings] = MappingProxyType({
    "realistic": SimSettings(),
    "instant": SimSettings(
        simulate_latency=False, max_concurrency=None, overloaded_rate=0.0,
        server_error_rate=0.0, hang_rate=0.0, stream_break_rate=0.0),  # the others are 0
    "flaky": SimSettings(
        rate_limit_rate=0.05, overloaded_rate=0.05, server_error_rate=0.03, hang_rate=0.01,
        stream_break_rate=0.03, content_filter_rate=0.01, retry_after_s=1.0,
        max_concurrency=5, ttft_p50_s=0.6, ttft_p99_s=3.0),
})


@dataclass(frozen=True, kw_only=True, slots=True)
class SimStats:
    """A snapshot of the backend's counters.

    Attributes:
        calls: `complete` calls plus streams that asked for admission.
        completed: calls and streams that delivered a whole answer.
        errors: errors by kind: bad_request, content_filter, context_too_long,
            concurrency_limit (1302), frequency_limit (1303), plus the random kinds of
            FAULT_KINDS ("hang" counts hangs begun).
        cancelled: calls and streams cancelled while waiting.
        prompt_tokens, completion_tokens: usage of the completed calls.
        in_flight, peak_in_flight: calls holding a concurrency slot, now and at most.
        streams_opened: `stream()` objects created.
        streams_closed: streams that finished, failed, were closed or were cancelled.
        abandoned_streams: streams garbage-collected before finishing or being closed.
    """

    calls: int
    completed: int
    errors: dict[str, int]
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    in_flight: int
    peak_in_flight: int
    streams_opened: int
    streams_closed: int
    abandoned_streams: int


class _Bucket:
    """A continuous-refill token bucket: capacity `per_minute`, refilled at per_minute/60/s."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, per_minute: float) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.level = per_minute
        self.stamp: float | None = None

    def shortfall_s(self, cost: float, now: float) -> float:
        """Refill to `now`; seconds until `cost` fits (0.0 if it fits now)."""
        if self.stamp is None or now > self.stamp:  # a clock that steps back refills nothing
            if self.stamp is not None:
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now
        missing = min(cost, self.capacity) - self.level  # a huge charge waits for a full bucket
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def take(self, cost: float) -> None:
        self.level -= min(cost, self.capacity)


class _Markov:
    """Incident on/off periods with exponential lengths, drawn lazily along the clock."""

    __slots__ = ("gap_s", "length_s", "on", "rng", "switch_at")

    def __init__(self, seed: int, gap_s: float, length_s: float, now: float) -> None:
        self.rng = random.Random(_seed_int(f"{seed}|incident"))
        self.gap_s, self.length_s = gap_s, length_s
        self.on = False
        self.switch_at = now + self.rng.expovariate(1.0 / gap_s)

    def active(self, now: float) -> bool:
        while now >= self.switch_at:
            self.on = not self.on
            mean = self.length_s if self.on else self.gap_s
            self.switch_at += self.rng.expovariate(1.0 / mean)
        return self.on


def _seed_int(key: str) -> int:
    # sha256, never hash(): str hashes are salted per process.
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _bands(rates: Mapping[str, float]) -> tuple[tuple[float, str], ...]:
    """Cumulative probability bands over [0, 1) for the non-zero fault rates."""
    bands, edge = [], 0.0
    for kind in FAULT_KINDS:
        if rates[kind] > 0:
            edge = min(1.0, edge + rates[kind])
            bands.append((edge, kind))
    return tuple(bands)


def _pick(bands: tuple[tuple[float, str], ...], u: float) -> str | None:
    for edge, kind in bands:
        if u < edge:
            return kind
    return None


def _incident_bands(s: SimSettings, overload_rate: float) -> tuple[tuple[float, str], ...]:
    rates = s.fault_rates()
    rates["overloaded"] = max(rates["overloaded"], overload_rate)
    return _bands(rates)  # bands past 1.0 are cut: later kinds get squeezed out


def _max_tokens(data: Mapping[str, Any], s: SimSettings) -> int:
    value = data.get("max_tokens")
    if value is None:
        return s.max_tokens
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequestError(f"max_tokens must be a positive int, got {value!r}", code="1214")
    return value


def _early_error(kind: str, s: SimSettings) -> AIError:
    """The error of a random fault that rejects a call before it takes a slot."""
    if kind == "rate_limit":
        return RateLimitError("1302 账户已达到速率限制 (simulated: rate limited)", code="1302",
                              retry_after=s.retry_after_s)
    if kind == "overloaded":
        return OverloadedError("1305 该模型当前访问量过大，请您稍后再试 (simulated: overloaded)")
    if kind == "content_filter":
        return ContentFilterError("1301 系统检测到输入或生成内容可能包含不安全或敏感内容")
    return ContextTooLongError("1261 Prompt 超长 (simulated: context too long)")


class _Call:
    """One attempt with everything random drawn up front, in a fixed order.

    The draws are: fault, TTFT, speed, length, break position; then, when first needed, the
    answer text and a translation's confidence; a stream then draws its chunk sizes.
    """

    __slots__ = (
        "_result",
        "break_at",
        "chinese",
        "factor",
        "finish_reason",
        "kind",
        "max_tokens",
        "n_out",
        "pieces",
        "prompt_tokens",
        "request",
        "rng",
        "token_s",
        "u_fault",
        "z_ttft",
    )

    def __init__(self, request: AIRequest, s: SimSettings, seed: int, prompt: str,
                 prompt_tokens: int, max_tokens: int) -> None:
        self.request, self.prompt_tokens, self.max_tokens = request, prompt_tokens, max_tokens
        rng = self.rng = random.Random(_seed_int(f"{seed}|{request.task_id}|{request.attempt}"))
        self.u_fault = rng.random()
        self.kind: str | None = None  # set by the backend: the bands depend on incidents
        self.factor = 1.0  # the incident latency multiplier, also set by the backend
        self.z_ttft = rng.gauss(0.0, 1.0)
        self.token_s = 1.0 / (s.output_tps_p50 * math.exp(s.output_tps_sigma * rng.gauss(0.0, 1.0)))
        z_len = rng.gauss(0.0, 1.0)
        if request.request_type == "translation":  # a translation is as long as its source
            wanted = max(1, round(estimate_tokens(prompt) * math.exp(0.15 * z_len)))
        else:
            wanted = max(1, round(s.output_tokens_p50 * math.exp(s.output_tokens_sigma * z_len)))
        self.n_out = min(wanted, max_tokens)
        self.finish_reason = "length" if wanted > max_tokens else "stop"
        self.break_at = int(rng.random() * self.n_out)  # tokens delivered before a break
        self.chinese = reply_in_chinese(request.request_type, request.request_data, prompt)
        self.pieces: list[str] = []
        self._result: dict[str, Any] | None = None

    def result(self, model: str) -> dict[str, Any]:
        """The answer, drawn on first use (failed calls never pay for the text)."""
        if self._result is None:
            self.pieces, sentences = filler(self.rng, self.chinese, self.n_out)
            usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.n_out,
                     "total_tokens": self.prompt_tokens + self.n_out}
            req = self.request
            self._result = build_result(req.request_type, req.request_data,
                                        "".join(self.pieces), sentences, usage, model, self.rng)
        return self._result


class _Counters:
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
        **overrides: SimSettings fields replacing those of `settings`.

    Raises:
        TypeError: an override is not a SimSettings field.
        ValueError: a setting is out of range.
    """

    def __init__(self, settings: SimSettings | None = None, *, seed: int = 0,
                 clock: Clock | None = None, **overrides: Any) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._n = _Counters()
        self._abandoned: list[bool] = []  # filled by SimStream.__del__, drained on next use
        self._manual_until = -math.inf
        self._manual = (0.5, 3.0)  # overload rate and latency factor of set_incident
        self._settings = settings if settings is not None else PROFILES["realistic"]
        self._apply(dataclasses.replace(self._settings, **overrides), fresh=True)

    @classmethod
    def from_profile(cls, name: str, *, seed: int = 0, clock: Clock | None = None,
                     **overrides: Any) -> SimulatedAIBackend:
        """A backend with the settings of `PROFILES[name]` ("realistic", "instant", "flaky")."""
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; expected one of: {', '.join(PROFILES)}")
        return cls(PROFILES[name], seed=seed, clock=clock, **overrides)

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
        self._bands = _bands(new.fault_rates())
        self._incident_bands = _incident_bands(new, new.incident_overload_rate)
        self._manual_bands = _incident_bands(new, self._manual[0])
        self._ttft_sigma = math.log(new.ttft_p99_s / new.ttft_p50_s) / _Z99
        if fresh or (old.rpm, old.tpm) != (new.rpm, new.tpm):  # a new limit starts full
            self._rpm = _Bucket(new.rpm) if new.rpm is not None else None
            self._tpm = _Bucket(new.tpm) if new.tpm is not None else None
        if fresh or (old.incident_mean_gap_s, old.incident_mean_length_s) != (
                new.incident_mean_gap_s, new.incident_mean_length_s):
            self._markov: _Markov | None = None  # restarted lazily: it needs clock.now()
        # Reading the clock costs; the instant profile never needs it.
        self._timed = (self._rpm is not None or self._tpm is not None
                       or new.incident_mean_gap_s is not None or self._manual_until > -math.inf)

    def set_incident(self, duration_s: float, overload_rate: float = 0.5,
                     latency_factor: float = 3.0) -> None:
        """Start an incident now for `duration_s` of clock time: more 503s, slower answers."""
        _check(duration_s >= 0 and 0 <= overload_rate <= 1 and latency_factor > 0,
               "need duration_s >= 0, overload_rate in [0, 1] and latency_factor > 0")
        self._manual = (overload_rate, latency_factor)
        self._manual_bands = _incident_bands(self._settings, overload_rate)
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
            self._markov = _Markov(self.seed, s.incident_mean_gap_s, s.incident_mean_length_s,
                                   now)
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

    def stream(self, request: AIRequest) -> SimStream:
        """The answer as an async iterator of chunks; admission happens on the first chunk."""
        self._n.opened += 1
        return SimStream(self, request)

    def _admit(self, request: AIRequest) -> _Call:
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
        call.kind = _pick(bands, call.u_fault) if bands else None
        self._check_limits(call, s, now)
        if call.kind is not None and call.kind not in _LATE_KINDS:
            raise self._fail(call.kind, _early_error(call.kind, s))
        n.in_flight += 1
        n.peak = max(n.peak, n.in_flight)
        return call

    def _plan(self, request: AIRequest, s: SimSettings) -> _Call:
        try:
            prompt = prompt_text(request.request_type, request.request_data)
            max_tokens = _max_tokens(request.request_data, s)
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
        return _Call(request, s, self.seed, prompt, prompt_tokens, max_tokens)

    def _check_limits(self, call: _Call, s: SimSettings, now: float) -> None:
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

    async def _first_token(self, call: _Call) -> None:
        """Wait out the TTFT (or hang); a server error strikes at its end."""
        s = self._settings
        if call.kind == "hang":
            await self._hang(s)
        if s.simulate_latency:
            u = (self._n.in_flight - 1) / s.soft_capacity  # the other calls in flight
            median = s.ttft_p50_s + s.prefill_s_per_1k_tokens * call.prompt_tokens / 1000.0
            ttft = median * math.exp(self._ttft_sigma * call.z_ttft) * (1.0 + 1.5 * u * u)
            await self.clock.sleep(ttft * call.factor)
        if call.kind == "server_error":
            raise self._fail("server_error", ServerError("500 内部错误 (simulated server error)",
                                                         code="500"))

    async def _decode(self, call: _Call, tokens: int) -> None:
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

    def _finish(self, call: _Call) -> dict[str, Any]:
        result = call.result(self._settings.model)
        n = self._n
        n.completed += 1
        n.prompt_tokens += call.prompt_tokens
        n.completion_tokens += call.n_out
        return result


class SimStream:
    """A streamed answer: an async iterator of `StreamChunk`s, also an async context manager.

    The first `__anext__` asks for admission (rejections raise there) and waits the TTFT;
    each chunk carries one or two tokens; the last has finish_reason, usage and result.
    `aclose()`, leaving `async with`, cancellation, an error or the last chunk free the
    concurrency slot at once. A stream garbage-collected before any of those is counted in
    `abandoned_streams`, and its slot is freed at the backend's next call or `stats()`.
    """

    __slots__ = ("_backend", "_call", "_done", "_holding", "_index", "_request", "_sent")

    def __init__(self, backend: SimulatedAIBackend, request: AIRequest) -> None:
        self._done = False
        self._backend, self._request = backend, request
        self._call: _Call | None = None
        self._holding = False  # whether this stream holds a concurrency slot
        self._sent = 0  # tokens delivered
        self._index = 0  # chunks delivered

    def __del__(self) -> None:
        if not self._done:
            self._backend._abandoned.append(self._holding)

    @property
    def closed(self) -> bool:
        """Whether the stream has ended (finished, failed, closed or cancelled)."""
        return self._done

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream and free its slot now."""
        self._end()

    async def __anext__(self) -> StreamChunk:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._next_chunk()
        except BaseException as exc:  # cancellation included: the slot goes back at once
            if isinstance(exc, asyncio.CancelledError) and not self._done:
                self._backend._n.cancelled += 1
            self._end()
            raise

    async def _next_chunk(self) -> StreamChunk:
        backend, call = self._backend, self._call
        if call is None:
            call = self._call = backend._admit(self._request)
            self._holding = True
            await backend._first_token(call)
            call.result(backend.settings.model)  # the text is drawn before the chunk sizes
            size = self._chunk_size(call)
        else:
            size = self._chunk_size(call)
            await backend._decode(call, size)
        if self._done:  # aclose() ran while this chunk was on its way
            raise StopAsyncIteration
        if call.kind == "stream_break" and self._sent + size > call.break_at:
            raise backend._fail("stream_break", StreamInterruptedError(
                f"stream broke after {self._index} chunks: peer closed connection",
                partial_text="".join(call.pieces[:self._sent]), chunks_received=self._index))
        text = "".join(call.pieces[self._sent:self._sent + size])
        self._sent += size
        self._index += 1
        if self._sent < call.n_out:
            return StreamChunk(self._index - 1, text)
        result = backend._finish(call)
        self._end()
        return StreamChunk(self._index - 1, text, finish_reason=call.finish_reason,
                           usage=result["usage"], result=result)

    def _chunk_size(self, call: _Call) -> int:
        return min(1 if call.rng.random() < 0.5 else 2, call.n_out - self._sent)

    def _end(self) -> None:
        if self._done:
            return
        self._done = True
        n = self._backend._n
        n.closed += 1
        if self._holding:
            self._holding = False
            n.in_flight -= 1
