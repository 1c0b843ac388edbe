"""The command line's error handling: its exit codes, argument checks that fail at parse
time, and the one line on stderr each error becomes (what was wrong, what to do).

Exit codes of `chatroom-async`:

    0    done (for `submit --wait`: the task completed)
    1    the task did not complete (`submit --wait`: failed or cancelled), or `cancel`
         found it finished already
    2    a bad command line: an unknown option or backend, a number out of range, --data
         that is not JSON, a bad --redis-url or --namespace
    3    the request was rejected (a ValidationError): nothing was queued
    4    no such task (never submitted, or its record expired)
    5    `submit --wait` gave up: the task is still unfinished
    6    Redis cannot be reached, or refused the command
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import (
    ChatroomAsyncError,
    ProcessorError,
    TaskNotFoundError,
    TaskWaitTimeout,
    ValidationError,
)
from .validation import validate_namespace

OK, NOT_COMPLETED, USAGE, REJECTED, NOT_FOUND, WAIT_TIMEOUT, REDIS, INTERRUPTED = (
    0, 1, 2, 3, 4, 5, 6, 130)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def fail(message: str, code: int) -> int:
    """Print one line on stderr; return the exit code."""
    print(f"chatroom-async: error: {message}", file=sys.stderr, flush=True)
    return code


def explain(exc: BaseException, url: str) -> int:
    """The one line and the exit code of an error a command raised."""
    if isinstance(exc, ValidationError):
        where = f" ({exc.field})" if exc.field else ""
        return fail(f"request rejected{where}: {exc}; nothing was queued", REJECTED)
    if isinstance(exc, TaskNotFoundError):
        return fail(f"{exc}: never submitted, or its record expired after the result TTL",
                    NOT_FOUND)
    if isinstance(exc, TaskWaitTimeout):
        return fail(f"{exc}; it goes on in the queue: look later with `chatroom-async status "
                    "TASK_ID`", WAIT_TIMEOUT)
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
        return fail(f"cannot reach Redis at {url} ({exc}); start redis-server, or pass "
                    "--redis-url (or set CHATROOM_ASYNC_REDIS_URL)", REDIS)
    if isinstance(exc, RedisError):
        return fail(f"Redis at {url} refused the command: {exc}", REDIS)
    if isinstance(exc, ProcessorError):
        return fail(str(exc), USAGE)
    if isinstance(exc, ChatroomAsyncError):
        return fail(str(exc), NOT_COMPLETED)
    raise exc


# -- argument types: each raises ArgumentTypeError, which the parser prints as one line ----
def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(text, float))
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def per_minute(text: str) -> float:
    value = float(_number(text, float))
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number per minute > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = float(_number(text, float))
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def redis_url(text: str) -> str:
    """A URL redis-py can connect to (checked without connecting)."""
    try:
        ConnectionPool.from_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Redis URL ({exc}); use e.g. "
                                         "redis://127.0.0.1:6379/0") from None
    return text


def namespace(text: str) -> str:
    try:
        validate_namespace(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--data is not valid JSON ({exc}); pass an object "
                                         """like '{"message": "你好"}'""") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--data must be a JSON object, got "
                                         f"{type(value).__name__}")
    return value


def user_id(text: str) -> int | str:
    """An int id when the text is all digits, else the string as given."""
    return int(text) if text.isascii() and text.isdigit() else text
