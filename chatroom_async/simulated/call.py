"""One simulated attempt: every random draw about it, made up front in a fixed order.

Owns `SimCall` and the seeding of per-attempt generators. It decides what an attempt will
do (fault draw, TTFT draw, speed, length, break position, answer text); it never sleeps or
counts: the backend in `chatroom_async.simulated` applies the plan.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from typing import Any

from ..backend import AIRequest
from ..errors import BadRequestError
from .settings import SimSettings
from .tokens import build_result, estimate_tokens, filler, reply_in_chinese


def seed_int(key: str) -> int:
    """A 64-bit seed from a string, the same in every process."""
    # sha256, never hash(): str hashes are salted per process.
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def request_max_tokens(data: Mapping[str, Any], s: SimSettings) -> int:
    """The request's output cap: its "max_tokens", else the settings'.

    Raises:
        BadRequestError: "max_tokens" is not a positive int (1214).
    """
    value = data.get("max_tokens")
    if value is None:
        return s.max_tokens
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequestError(f"max_tokens must be a positive int, got {value!r}", code="1214")
    return value


class SimCall:
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
        rng = self.rng = random.Random(seed_int(f"{seed}|{request.task_id}|{request.attempt}"))
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
