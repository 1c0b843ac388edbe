"""`chatroom-async demo`: what the chapter's `demo_async_processor` meant to do, done right.

It runs on the embedded fakeredis with the simulated backend: submits requests of each
type and priority, shows streamed progress, cancels one queued task, shows a rejected
request, waits for every result (events, not a fixed sleep) and prints the statistics.
"""

from __future__ import annotations

import asyncio
from typing import TextIO

from .errors import ValidationError
from .processor import AsyncAIProcessor
from .simulated import SimulatedAIBackend
from .task import AITask, TaskPriority

REQUESTS: list[tuple[str, dict[str, str], TaskPriority]] = [
    ("chat_completion", {"message": "你好，请介绍一下异步处理的好处"}, TaskPriority.URGENT),
    ("translation", {"text": "异步处理让聊天室保持流畅", "target_language": "en"},
     TaskPriority.HIGH),
    ("content_summary", {"content": "本章介绍任务队列、调度器、工作池、重试与超时。" * 3},
     TaskPriority.NORMAL),
    ("chat_completion", {"message": "What does a task lease protect against?"},
     TaskPriority.NORMAL),
    ("translation", {"text": "Workers pull tasks from one queue", "target_language": "zh"},
     TaskPriority.LOW),
    ("chat_completion", {"message": "这条低优先级消息会被取消"}, TaskPriority.LOW),
]


async def run_demo(out: TextIO, *, seed: int = 7, max_workers: int = 3) -> int:
    """Run the demo, printing to `out`; returns the process exit code."""
    backend = SimulatedAIBackend.from_profile("realistic", seed=seed, output_tokens_p50=40,
                                              overloaded_rate=0.0, server_error_rate=0.0,
                                              hang_rate=0.0, stream_break_rate=0.0)
    print("=== 异步AI处理器演示 (chatroom_async demo) ===", file=out)
    async with AsyncAIProcessor(max_workers=max_workers, backend=backend, seed=seed) as p:
        chunks: dict[str, int] = {}

        def on_progress(task: AITask) -> None:
            chunks[task.task_id] = chunks.get(task.task_id, 0) + 1
            if chunks[task.task_id] % 15 == 1:
                print(f"  … {task.task_id[:8]} streaming, {chunks[task.task_id]} chunks", file=out)

        p.add_callback("task_started", lambda t: print(
            f"  ▶ {t.task_id[:8]} started ({t.request_type}, {t.priority.name})", file=out))
        p.add_callback("task_progress", on_progress)
        p.add_callback("task_completed", lambda t: print(
            f"  ✔ {t.task_id[:8]} completed in {t.processing_time:.2f} s", file=out))
        p.add_callback("task_failed", lambda t: print(
            f"  ✘ {t.task_id[:8]} failed: {t.error_type}: {t.error_message}", file=out))

        try:
            await p.submit_task(1, "translation", {"text": "缺少目标语言"})
        except ValidationError as exc:
            print(f"rejected at submit (请求验证): {exc}", file=out)
        ids = [await p.submit_task(user_id=i + 1, request_type=rtype, request_data=data,
                                   priority=prio) for i, (rtype, data, prio) in enumerate(REQUESTS)]
        print(f"submitted {len(ids)} tasks; cancelling the last (queued) one: "
              f"{await p.cancel_task(ids[-1])}", file=out)
        finals = [await p.wait_for_task(task_id, timeout=120) for task_id in ids]
        print("final statuses:", file=out)
        for final in finals:
            print(f"  {final['task_id'][:8]} {final['request_type']:<16} "
                  f"priority={final['priority']} status={final['status']}", file=out)
        stats = await p.get_stats()
        keys = ("total_tasks", "completed_tasks", "failed_tasks", "cancelled_tasks",
                "retried_tasks", "average_processing_time", "success_rate", "current_queue_size")
        print("stats: " + ", ".join(f"{k}={_fmt(stats[k])}" for k in keys), file=out)
    return 0 if all(f["status"] in ("completed", "cancelled") for f in finals) else 1


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(out: TextIO) -> int:
    return asyncio.run(run_demo(out))
