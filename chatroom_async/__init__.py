"""chatroom_async: an asyncio AI-task processor on Redis, for the Chat-Room chapter 异步处理机制.

    from chatroom_async import AsyncAIProcessor, TaskPriority

    async with AsyncAIProcessor(max_workers=10) as p:          # embedded fakeredis
        task_id = await p.submit_task(1, "chat_completion", {"message": "你好"},
                                      priority=TaskPriority.HIGH)
        final = await p.wait_for_task(task_id)
"""

from .backend import AIBackend, AIRequest, FunctionBackend, InstantBackend, StreamChunk
from .clock import Clock, LoopClock, SystemClock
from .errors import (
    AIError,
    AITimeoutError,
    BadRequestError,
    ChatroomAsyncError,
    ContentFilterError,
    ContextTooLongError,
    CorruptTaskError,
    DeliveryLimitExceeded,
    OverloadedError,
    PermanentAIError,
    ProcessorError,
    RateLimitError,
    RetryableAIError,
    ServerError,
    StreamInterruptedError,
    TaskAccessError,
    TaskNotFoundError,
    TaskRecordError,
    TaskWaitTimeout,
    ValidationError,
    VirtualTimeDeadlock,
)
from .events import EVENT_TYPES, EventType, TaskEvent
from .processor import AsyncAIProcessor
from .retry import RetryPolicy
from .scheduler import PriorityScheduler, Scheduler
from .settings import ProcessorSettings, ProviderLimits
from .simulated import SimSettings, SimulatedAIBackend
from .simulation import SimulationConfig, SimulationReport, simulate, simulate_async
from .task import AITask, TaskPriority, TaskStatus
from .validation import Limits

__all__ = [
    "AIBackend",
    "AIError",
    "AIRequest",
    "AITask",
    "AITimeoutError",
    "AsyncAIProcessor",
    "BadRequestError",
    "ChatroomAsyncError",
    "Clock",
    "ContentFilterError",
    "ContextTooLongError",
    "CorruptTaskError",
    "DeliveryLimitExceeded",
    "EVENT_TYPES",
    "EventType",
    "FunctionBackend",
    "InstantBackend",
    "Limits",
    "LoopClock",
    "OverloadedError",
    "PermanentAIError",
    "PriorityScheduler",
    "ProcessorError",
    "ProcessorSettings",
    "ProviderLimits",
    "RateLimitError",
    "RetryableAIError",
    "RetryPolicy",
    "Scheduler",
    "ServerError",
    "SimSettings",
    "simulate",
    "simulate_async",
    "SimulatedAIBackend",
    "SimulationConfig",
    "SimulationReport",
    "StreamChunk",
    "StreamInterruptedError",
    "SystemClock",
    "TaskAccessError",
    "TaskEvent",
    "TaskNotFoundError",
    "TaskRecordError",
    "TaskPriority",
    "TaskStatus",
    "TaskWaitTimeout",
    "ValidationError",
    "VirtualTimeDeadlock",
]
