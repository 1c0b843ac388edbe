"""Every exception the package raises, in one tree.

"Should this be retried?" is a type check: retryable and permanent AI errors are separate
branches. A failed task stores the error's class name and message (never a pickled
exception), so a client in any process can tell a timeout from a content filter.

    ChatroomAsyncError
    ├── ValidationError            a request rejected at submit; nothing was queued
    ├── ProcessorError             misuse of the processor (not started, closed, bad setting)
    ├── TaskNotFoundError          no record under that task id
    ├── TaskAccessError            the task belongs to another user (reads, follows, cancels)
    ├── TaskWaitTimeout            wait_for_task gave up before the task finished
    ├── VirtualTimeDeadlock        a simulation waits on nothing that can happen
    ├── TaskRecordError            why a task ended without a result from the AI (error_type)
    │   ├── CorruptTaskError          its record cannot be read back (a task, never retried)
    │   └── DeliveryLimitExceeded     delivered too often: its workers kept dying mid-run
    └── AIError                    an AI backend call failed          .retryable
        ├── RetryableAIError                                           True
        │   ├── RateLimitError        429 (codes 1302 concurrency, 1303 frequency)
        │   ├── OverloadedError       503 (code 1305: the platform is overloaded)
        │   ├── ServerError           500
        │   ├── AITimeoutError        the task's timeout expired (a hung call ends here)
        │   └── StreamInterruptedError  a stream broke part-way; keeps the partial text
        └── PermanentAIError                                           False
            ├── BadRequestError       400 (unknown request type, malformed data)
            ├── ContentFilterError    400 / code 1301
            └── ContextTooLongError   400 / code 1261
"""

from __future__ import annotations

from typing import Any


class ChatroomAsyncError(Exception):
    """Root of every error raised by chatroom_async."""


class ValidationError(ChatroomAsyncError, ValueError):
    """A submitted request is invalid. `field` names the offending part."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProcessorError(ChatroomAsyncError, RuntimeError):
    """The processor was used in a state or with a setting that cannot work."""


class TaskNotFoundError(ChatroomAsyncError, KeyError):
    """No task record exists under this id (never submitted, or expired)."""

    def __str__(self) -> str:  # KeyError would print the repr of the argument
        return str(self.args[0]) if self.args else "task not found"


class TaskAccessError(ChatroomAsyncError, PermissionError):
    """The task exists but belongs to another user than the one named (`user_id=`).

    Raised by `get_task_status`, `follow` and `cancel_task` when they are scoped to a user,
    so a chat server that passes its session's user cannot show or cancel another user's
    task by mistake. Nothing is read out or changed.
    """


class TaskWaitTimeout(ChatroomAsyncError, TimeoutError):
    """`wait_for_task` reached its timeout before the task finished."""


class VirtualTimeDeadlock(ChatroomAsyncError, RuntimeError):
    """Nothing can ever happen again: no callback is ready, no timer is set, no thread works.

    In a closed simulation this means a coroutine awaits something that only the outside
    world could deliver (a future nobody resolves, a socket nobody writes to).
    """


class TaskRecordError(ChatroomAsyncError):
    """Why a task failed without an AI error. Never raised to callers: a failed task's
    `error_type` names one of these classes, as it names an `AIError` class otherwise."""


class CorruptTaskError(TaskRecordError):
    """The task's record could not be read back (bad JSON, a missing or mistyped field)."""


class DeliveryLimitExceeded(TaskRecordError):
    """The task was delivered more times than allowed: each worker that ran it died (or
    lost its lease) before recording an outcome, so running it again looks unsafe."""


class AIError(ChatroomAsyncError):
    """An AI backend call failed.

    Attributes:
        retryable: whether another attempt may succeed.
        status: the HTTP-like status code of the failure, if any.
        code: the provider's error code (Zhipu style, e.g. "1302"), if any.
        retry_after: seconds the provider asked us to wait before retrying, if any.
    """

    retryable: bool = False
    status: int | None = None
    default_code: str | None = None

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message or type(self).__name__)
        self.message = message or type(self).__name__
        self.code = code if code is not None else self.default_code
        if status is not None:
            self.status = status
        self.retry_after = retry_after

    def to_record(self) -> dict[str, Any]:
        """The JSON-safe description stored on a failed task."""
        return {
            "error_type": type(self).__name__,
            "error_message": self.message,
            "error_code": self.code,
            "retryable": self.retryable,
        }


class RetryableAIError(AIError):
    """A failure that another attempt, after a pause, may not repeat."""

    retryable = True


class PermanentAIError(AIError):
    """A failure that will repeat on every attempt: never retried."""

    retryable = False


class RateLimitError(RetryableAIError):
    status = 429
    default_code = "1302"


class OverloadedError(RetryableAIError):
    status = 503
    default_code = "1305"


class ServerError(RetryableAIError):
    status = 500
    default_code = "500"


class AITimeoutError(RetryableAIError):
    status = 408


class StreamInterruptedError(RetryableAIError):
    """The stream broke after some chunks: `partial_text` holds what arrived."""

    status = 502

    def __init__(self, message: str = "", *, partial_text: str = "", chunks_received: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.partial_text = partial_text
        self.chunks_received = chunks_received

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        record["partial_text"] = self.partial_text
        return record


class BadRequestError(PermanentAIError):
    status = 400


class ContentFilterError(PermanentAIError):
    status = 400
    default_code = "1301"


class ContextTooLongError(PermanentAIError):
    status = 400
    default_code = "1261"


def classify(exc: BaseException) -> AIError:
    """Map any exception raised by a backend call onto the AIError tree.

    AIErrors pass through. Connection-level failures (OSError, ConnectionError) are
    transient, so they become ServerError. Anything else is a bug or a bad request in the
    backend: it becomes a permanent BadRequestError, so it is not retried blindly.
    """
    if isinstance(exc, AIError):
        return exc
    if isinstance(exc, TimeoutError):
        return AITimeoutError(str(exc) or "the AI call timed out")
    if isinstance(exc, OSError):
        return ServerError(f"{type(exc).__name__}: {exc}")
    return BadRequestError(f"{type(exc).__name__}: {exc}")
