"""The simulated backend's settings, named profiles and counter snapshot.

Owns `SimSettings` (every knob of `SimulatedAIBackend`, validated when built), the fault
kinds and their mix, `PROFILES`, and `SimStats`. Plain values only: nothing here sleeps,
draws random numbers or keeps state; the backend in `chatroom_async.simulated` does that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

#: The random fault kinds, in the order their probability bands are laid out on [0, 1).
FAULT_KINDS = ("rate_limit", "overloaded", "server_error", "hang", "stream_break",
               "content_filter", "context_too_long")

#: How `SimSettings.failure_rate` is split between the kinds (the shares sum to 1).
FAILURE_MIX: Mapping[str, float] = MappingProxyType({
    "rate_limit": 0.30, "overloaded": 0.25, "server_error": 0.20, "stream_break": 0.15,
    "hang": 0.04, "content_filter": 0.03, "context_too_long": 0.03,
})

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
        check(0 < self.ttft_p50_s <= self.ttft_p99_s, "need 0 < ttft_p50_s <= ttft_p99_s")
        check(self.output_tps_p50 > 0 and self.output_tokens_p50 >= 1,
              "output_tps_p50 must be > 0 and output_tokens_p50 >= 1")
        check(min(self.output_tps_sigma, self.output_tokens_sigma,
                  self.prefill_s_per_1k_tokens) >= 0, "sigmas and prefill must be >= 0")
        check(self.max_tokens >= 1 and self.context_window >= 1 and self.soft_capacity > 0,
              "max_tokens, context_window and soft_capacity must be positive")
        for name in ("max_concurrency", "rpm", "tpm", "incident_mean_gap_s"):
            check(getattr(self, name) is None or getattr(self, name) > 0, f"{name} must be > 0")
        for name in ("retry_after_s", "hang_s"):
            check(getattr(self, name) is None or getattr(self, name) >= 0, f"{name} must be >= 0")
        check(self.incident_latency_factor > 0 and self.incident_mean_length_s > 0,
              "incident_latency_factor and incident_mean_length_s must be > 0")
        check(isinstance(self.blocked_terms, tuple), "blocked_terms must be a tuple of str")

    def fault_rates(self) -> dict[str, float]:
        """The probability per attempt of each fault kind, after `failure_rate`."""
        if self.failure_rate is not None:
            return {kind: self.failure_rate * FAILURE_MIX[kind] for kind in FAULT_KINDS}
        return {kind: getattr(self, f"{kind}_rate") for kind in FAULT_KINDS}

    def ttft_sigma(self) -> float:
        """The sigma of the lognormal TTFT that puts its 99th percentile at `ttft_p99_s`."""
        return math.log(self.ttft_p99_s / self.ttft_p50_s) / _Z99

    def estimated_latency_s(self) -> float:
        """The mean latency of one unloaded call of a short prompt, from the settings alone.

        Lognormal means (median * exp(sigma^2 / 2)) of the TTFT and of the decode time of
        `output_tokens` tokens; ignores the max_tokens cap, load, prefill and faults.

        Returns:
            Seconds; 0.0 when `simulate_latency` is False.
        """
        if not self.simulate_latency:
            return 0.0
        ttft = self.ttft_p50_s * math.exp(self.ttft_sigma() ** 2 / 2)
        tokens = self.output_tokens_p50 * math.exp(self.output_tokens_sigma ** 2 / 2)
        per_token = math.exp(self.output_tps_sigma ** 2 / 2) / self.output_tps_p50
        return ttft + max(0.0, tokens - 1) * per_token


def check(ok: bool, message: str) -> None:
    """Raise `ValueError(message)` unless `ok`: the settings' (and the backend's) guard."""
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
