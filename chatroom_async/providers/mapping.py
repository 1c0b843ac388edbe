"""The package's three request types as chat messages, and chat answers as the package's
result dicts (the same keys as the simulated backend's, type by type).

Pure functions over plain values: no SDK, no network. A malformed request raises the
package's `BadRequestError` (permanent: another attempt would fail the same way).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from chatroom_async import AIRequest, BadRequestError

SUMMARY_PROMPT = ("Summarize the user's text in two to four short sentences, in the "
                  "language of the text. Reply with the summary only.")
TRANSLATION_PROMPT = ("Translate the user's text into the language whose code is "
                      "{target}{source}. Reply with the translation only.")

#: The output a TPM limit is charged for when a call sets no max_tokens.
DEFAULT_CHARGED_OUTPUT_TOKENS = 1024

_ROLES = frozenset({"system", "user", "assistant"})
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SENTENCE_END = re.compile(r"(?<=[。！？!?])|(?<=\.)\s+")


def chat_messages(request: AIRequest, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The chat messages for one request.

    chat_completion: the optional `system_prompt`, the request's optional "history" (a list
    of {"role", "content"} dicts, oldest first), then "message" as the user's turn.
    content_summary and translation: a fixed instruction, then the text as the user's turn.

    Raises:
        BadRequestError: an unknown request type, or a missing or malformed field.
    """
    data, rtype = request.request_data, request.request_type
    if rtype == "chat_completion":
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return head + _history(data.get("history")) + [_user(data, "message")]
    if rtype == "content_summary":
        return [{"role": "system", "content": SUMMARY_PROMPT}, _user(data, "content")]
    if rtype == "translation":
        target = _text(data, "target_language")
        source = data.get("source_language")
        source_part = f", from the language whose code is {source}" \
            if isinstance(source, str) and source not in ("", "auto") else ""
        prompt = TRANSLATION_PROMPT.format(target=target, source=source_part)
        return [{"role": "system", "content": prompt}, _user(data, "text")]
    raise BadRequestError(f"unknown request_type {rtype!r}; expected chat_completion, "
                          "content_summary or translation", code="1214")


def request_options(data: Mapping[str, Any], max_tokens: int | None,
                    temperature: float | None) -> dict[str, Any]:
    """`max_tokens` and `temperature` for the call: the request's own, else the settings'."""
    options: dict[str, Any] = {}
    cap = data.get("max_tokens", max_tokens)
    if cap is not None:
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise BadRequestError(f"max_tokens must be a positive int, got {cap!r}", code="1214")
        options["max_tokens"] = cap
    temp = data.get("temperature", temperature)
    if temp is not None:
        if not isinstance(temp, (int, float)) or isinstance(temp, bool):
            raise BadRequestError(f"temperature must be a number, got {temp!r}", code="1214")
        options["temperature"] = temp
    return options


def build_result(request: AIRequest, text: str, usage: Mapping[str, int] | None,
                 model: str) -> dict[str, Any]:
    """The result dict of one request type around the answer `text`.

    Keys match `SimulatedAIBackend`'s: every type has "model", "usage" and "tokens_used";
    chat_completion adds "response"; content_summary "summary" and "key_points" (its first
    three sentences); translation "translated_text", "source_language" (as given, else
    guessed: "zh" for text with Chinese characters, "en" otherwise), "target_language" and
    "confidence" (None: a chat API reports none). Without usage from the provider,
    "usage" and "tokens_used" are None.
    """
    usage_dict = dict(usage) if usage is not None else None
    common: dict[str, Any] = {
        "model": model, "usage": usage_dict,
        "tokens_used": usage_dict.get("total_tokens") if usage_dict is not None else None,
    }
    data = request.request_data
    if request.request_type == "chat_completion":
        return {"response": text, **common}
    if request.request_type == "content_summary":
        return {"summary": text, "key_points": key_points(text), **common}
    source = data.get("source_language")
    if not isinstance(source, str) or source in ("", "auto"):
        source = "zh" if _HAN.search(str(data.get("text", ""))) else "en"
    return {"translated_text": text, "source_language": source,
            "target_language": data.get("target_language"), "confidence": None, **common}


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A rough prompt size: ~0.6 token per Chinese character, ~0.25 per other non-space
    character, 4 per message and 2 for the reply (no tokenizer of every model is at hand)."""
    total = 2
    for message in messages:
        text = message["content"]
        han = len(_HAN.findall(text))
        others = len("".join(text.split())) - han
        total += 4 + math.ceil(0.6 * han + 0.25 * others)
    return total


def key_points(text: str, limit: int = 3) -> list[str]:
    """The first `limit` distinct sentences of `text` (Chinese or English punctuation)."""
    sentences = (s.strip() for s in _SENTENCE_END.split(text))
    return list(dict.fromkeys(s for s in sentences if s))[:limit]


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequestError(f"request_data[{name!r}] must be a non-empty string", code="1214")
    return value


def _user(data: Mapping[str, Any], name: str) -> dict[str, str]:
    return {"role": "user", "content": _text(data, name)}


def _history(value: object) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequestError("request_data['history'] must be a list of messages", code="1214")
    messages = []
    for i, item in enumerate(value):
        if not (isinstance(item, Mapping) and item.get("role") in _ROLES
                and isinstance(item.get("content"), str)):
            raise BadRequestError(f"history[{i}] must be {{'role': system|user|assistant, "
                                  "'content': str}", code="1214")
        messages.append({"role": str(item["role"]), "content": str(item["content"])})
    return messages
