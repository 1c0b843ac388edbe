"""What the simulated model says and what it costs: token estimates and filler answers.

Owns `estimate_tokens` for Chinese and English text, the small Chinese/English phrase pools
the simulated backend answers from, and the result dicts of the three request types. Pure
functions: every random choice comes from the `random.Random` passed in; nothing here
sleeps, keeps state or knows about latency and faults (`chatroom_async.simulated` and its
`sim_faults`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequestError

#: Tokens per CJK character (DeepSeek's published ratio; GLM-4's tokenizer is close).
CJK_TOKENS_PER_CHAR = 0.6
#: Tokens per other non-space character: ~4 characters per token (~1.3 per English word).
OTHER_TOKENS_PER_CHAR = 0.25
#: Chat framing on top of the text: 4 tokens per message plus 2 for the reply primer.
PROMPT_OVERHEAD_TOKENS = 6

# Ideographs plus CJK punctuation and full-width forms: all cost about one token per char.
_CJK_CHAR = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

#: The text field each request type is about.
PROMPT_FIELD: Mapping[str, str] = {
    "chat_completion": "message",
    "content_summary": "content",
    "translation": "text",
}

_ZH_SENTENCES = (
    "好的，我来帮您看一下这个问题。",
    "异步处理可以让聊天室在等待模型回复时继续服务其他用户。",
    "建议先把任务放进队列，再由后台工作进程逐个处理。",
    "如果接口返回限流错误，可以稍等片刻后按指数退避重试。",
    "流式输出能让用户更早看到第一段文字。",
    "这个思路总体上可行，但还需要考虑超时和失败重试。",
    "简单来说，关键在于控制同时进行的请求数量。",
    "我们可以用信号量限制并发调用。",
    "请注意保存已经收到的部分结果。",
    "另外，记录每个任务的状态有助于排查问题。",
    "希望这些信息对您有帮助。",
    "总结一下，主要有三点需要注意。",
    "首先要确认请求参数是否完整。",
    "其次要为每次调用设置合理的超时时间。",
    "最后可以通过监控指标观察系统的负载情况。",
    "这段内容主要讨论了聊天室中的消息处理流程。",
    "如有需要，我可以进一步解释其中的细节。",
)
_EN_SENTENCES = (
    "Sure, let me take a look at that.",
    "Asynchronous processing keeps the chat room responsive while the model is thinking.",
    "A task queue lets background workers handle requests one at a time.",
    "If the API returns a rate limit error, wait a moment and retry with exponential backoff.",
    "Streaming shows the first words to the user much sooner.",
    "The idea works in general, but timeouts and retries still need care.",
    "In short, the key is to control how many requests run at once.",
    "A semaphore can cap the number of concurrent calls.",
    "Remember to keep the partial result that has already arrived.",
    "Recording the status of every task also makes debugging easier.",
    "I hope this helps.",
    "To sum up, there are three points to keep in mind.",
    "First, check that the request parameters are complete.",
    "Second, give every call a sensible timeout.",
    "Finally, watch the metrics to see how loaded the system is.",
    "This passage is mainly about how messages flow through the chat room.",
    "Let me know if you would like more detail on any part.",
)


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of `text`: ~0.6 per CJK character, ~0.25 per other character.

    Whitespace is free. The ratios are heuristics (there is no offline GLM tokenizer to
    calibrate against): Chinese lands near GLM-4/DeepSeek, English near 4 chars per token.

    Args:
        text: any Chinese, English or mixed text.

    Returns:
        The estimated token count; 0 only for empty or all-whitespace text.
    """
    if not text:
        return 0
    non_space = len("".join(text.split()))
    cjk = 0 if text.isascii() else len(text) - len(_CJK_CHAR.sub("", text))
    return math.ceil(CJK_TOKENS_PER_CHAR * cjk + OTHER_TOKENS_PER_CHAR * (non_space - cjk))


def has_cjk(text: str) -> bool:
    """Whether `text` contains a Chinese (Han) character."""
    return not text.isascii() and _HAN.search(text) is not None


def is_chinese_language(code: str) -> bool:
    """Whether a language code or name ('zh', 'zh-CN', 'chinese', '中文') means Chinese."""
    code = code.strip().lower()
    return code.startswith("zh") or code in ("cn", "chinese", "mandarin") or has_cjk(code)


def prompt_text(request_type: str, data: Mapping[str, Any]) -> str:
    """The text a request is about, checked the way a real API would check it.

    Raises:
        BadRequestError: unknown request type, or a missing or non-string field.
    """
    name = PROMPT_FIELD.get(request_type)
    if name is None:
        known = ", ".join(PROMPT_FIELD)
        raise BadRequestError(f"unknown request_type {request_type!r}; expected one of: {known}",
                              code="1214")
    text = data.get(name)
    if not isinstance(text, str):
        raise BadRequestError(f"{request_type} needs a string request_data[{name!r}]",
                              code="1214")
    if request_type == "translation" and not isinstance(data.get("target_language"), str):
        raise BadRequestError("translation needs a string request_data['target_language']",
                              code="1214")
    return text


def reply_in_chinese(request_type: str, data: Mapping[str, Any], prompt: str) -> bool:
    """Chat and summaries answer in the prompt's language; translations in the target's."""
    if request_type == "translation":
        return is_chinese_language(str(data["target_language"]))
    return has_cjk(prompt)


def _split_zh(sentence: str) -> tuple[str, ...]:
    # Pieces of 2, 2, 1 characters: ~1.67 characters per token, i.e. 0.6 tokens per char.
    pieces, i, k = [], 0, 0
    while i < len(sentence):
        size = 1 if k % 3 == 2 else 2
        pieces.append(sentence[i:i + size])
        i, k = i + size, k + 1
    return tuple(pieces)


def _split_en(sentence: str) -> tuple[str, ...]:
    # BPE-like pieces: a leading space joins the word; long words split every 4 characters.
    pieces: list[str] = []
    for word in sentence.split(" "):
        head, rest = " " + word[:4], word[4:]
        if len(rest) <= 1:
            head, rest = " " + word, ""
        pieces.append(head)
        pieces.extend(rest[i:i + 4] for i in range(0, len(rest), 4))
    return tuple(pieces)


# Split once at import: each answer only picks sentences and slices their pieces.
_ZH_POOL = tuple((s, _split_zh(s)) for s in _ZH_SENTENCES)
_EN_POOL = tuple((s, _split_en(s)) for s in _EN_SENTENCES)


def filler(rng: random.Random, chinese: bool, n_tokens: int) -> tuple[list[str], list[str]]:
    """Draw an answer of exactly `n_tokens` token pieces from the phrase pool.

    Args:
        rng: the request's own RNG (this consumes one draw per sentence).
        chinese: answer from the Chinese pool, else the English one.
        n_tokens: how many pieces (tokens) the answer has; at least 1.

    Returns:
        `(pieces, sentences)`: the token pieces, whose concatenation is the answer text, and
        the whole sentences drawn (the last one may be cut short in the pieces).
    """
    pool = _ZH_POOL if chinese else _EN_POOL
    size = len(pool)
    pieces: list[str] = []
    sentences: list[str] = []
    while len(pieces) < n_tokens:
        sentence, split = pool[int(rng.random() * size)]
        sentences.append(sentence)
        pieces.extend(split)
    del pieces[n_tokens:]
    if not chinese:
        pieces[0] = pieces[0].lstrip()  # the first word has no space before it
    return pieces, sentences


def build_result(request_type: str, data: Mapping[str, Any], text: str, sentences: list[str],
                 usage: dict[str, int], model: str, rng: random.Random) -> dict[str, Any]:
    """The result dict of one request type, around the answer `text`.

    A translation draws its confidence from `rng`, after the text, so a stream and a
    non-streaming call of the same request build the same dict.
    """
    common = {"model": model, "usage": usage, "tokens_used": usage["total_tokens"]}
    if request_type == "chat_completion":
        return {"response": text, **common}
    if request_type == "content_summary":
        key_points = list(dict.fromkeys(sentences))[:3]
        return {"summary": text, "key_points": key_points, **common}
    source = data.get("source_language")
    if not isinstance(source, str) or source in ("", "auto"):
        source = "zh" if has_cjk(str(data["text"])) else "en"
    return {
        "translated_text": text,
        "source_language": source,
        "target_language": data["target_language"],
        "confidence": round(0.80 + 0.19 * rng.random(), 3),
        **common,
    }
