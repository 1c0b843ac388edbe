"""练习2：智能任务调度（IntelligentTaskScheduler）。

你要写的是任务队列（Task Queue）前后的“调度大脑”，它插在真实处理器的四个位置：
- 队列顺序：`AsyncAIProcessor(scheduler=你的调度器, user_context=...)`。处理器每次任务入队时
  调用 `score(task, user_context)`，就绪集合里分数最小的先被工作者领走。`user_context` 是
  处理器为 `task.user_id` 查到的用户信息，评分时形如 `{"tier": "vip" | "standard" | "free",
  "recent_requests": 最近一小时的请求数}`。
- 任务依赖：用 `await 调度器.submit(processor, 请求, depends_on=[...])` 代替
  `processor.submit_task(**请求)`。
- 自适应并发与批处理：`ScheduledBackend(后端, 你的调度器)` 是一个后端，工作者每次调用它，
  它就调用你的 `call_backend`（或 `batching=True` 时调用 `call_batched`）。

评分（`chatroom-async grade scheduling`，虚拟时间、固定种子的工作负载，每项 20 分）：
1. VIP 优先：6 个工作者、到达率超出处理能力约 20%、所有任务都是 NORMAL 时，VIP 用户的
   p95 等待时间至多是先来先服务（FIFO）的 50%；并且 `calculate_task_priority` 给 VIP 的任务
   比给免费用户的同级任务更高的值，给 URGENT 比给 LOW 更高的值。
2. 不饿死：VIP 的 HIGH 任务以接近满载的速度持续到达 200 多秒，其间 10 个免费用户的 LOW
   任务最长等待不超过 90 秒（严格按优先级排队时它们要等 200 秒以上）。
3. 任务依赖：`submit` 立刻返回任务 id；任务只在它依赖的任务都 completed 之后才开始；依赖
   失败（比如被内容过滤）的任务永远不运行；其余任务全部完成。
4. 批处理：200 多个短摘要请求（content_summary）时，后端调用次数至少减少 60%，p95 延迟比
   不批处理时至多多 1 秒，且最后零散到达的请求也都完成。
5. 自适应并发：32 个工作者、提供方并发上限分别为 6 和 12（你事先不知道）时，被 429 拒绝的
   调用不超过 10%，没有任务失败，吞吐量至少是“知道上限的完美限流”的 75%。

另外，每次 await 之间的同步代码不能超过 0.25 秒（真实时间），否则算阻塞事件循环。

教学内容见 `notebooks/09_exercise_scheduling.ipynb`（各节标题与上面各项对应）。
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chatroom_async import AIBackend, AIRequest, AITask, AsyncAIProcessor
from chatroom_async.grading import BatchBackend


class IntelligentTaskScheduler:
    """智能任务调度器：优先级与老化、任务依赖、批处理、自适应并发。

    构造函数不带必需参数（评分时用 `IntelligentTaskScheduler()` 创建），可以自己加带默认值
    的关键字参数。一个调度器对象在一次运行中同时服务上面四个位置。
    """

    def __init__(self) -> None:
        # 在这里准备你的状态：被扣住等依赖的任务、正在凑的批、并发上限……
        pass

    def calculate_task_priority(self, task: AITask, user_context: Mapping[str, Any]) -> float:
        """计算任务的优先级：值越大越应该先运行（评分项 1）。

        依据用户等级 `user_context["tier"]`、任务自己的 `task.priority`（TaskPriority，
        LOW=1 … URGENT=4），也可以参考用户的历史 `user_context["recent_requests"]`。
        键可能缺失：给个合理的默认值。必须是纯函数、很快（每次提交都会调用）。
        """
        raise NotImplementedError

    def score(self, task: AITask, user_context: Mapping[str, Any]) -> float:
        """就绪集合里的分数：越小越先运行（`chatroom_async.Scheduler` 协议，评分项 1、2）。

        分数只在入队时算一次。要让等久了的任务终究能轮到（不饿死），把分数当作截止时间：
        `task.created_at`（入队时刻，秒）加上一段随优先级变小的宽限。返回有限的 float。
        """
        raise NotImplementedError

    async def submit(self, processor: AsyncAIProcessor, request: Mapping[str, Any],
                     depends_on: Sequence[str] = ()) -> str:
        """提交一个任务；有依赖时，等依赖都完成后再真正提交（评分项 3）。

        Args:
            processor: 正在运行的处理器。
            request: `processor.submit_task` 的关键字参数（user_id、request_type、
                request_data、priority、timeout、max_retries，可能有 task_id）。
            depends_on: 必须先 completed 的任务 id；它们可能也还扣在你这里没提交。

        Returns:
            任务 id（request 里有 task_id 就用它），立刻返回，不等依赖。
        """
        raise NotImplementedError

    async def call_backend(self, backend: AIBackend, request: AIRequest) -> dict[str, Any]:
        """调用一次后端：`await backend.complete(request)`，但控制同时在途的调用数（评分项 5）。

        提供方超出并发上限时抛出 `chatroom_async.RateLimitError`（429）。你可以把它继续抛给
        处理器（它会退避重试），也可以自己处理；不要让它变成别的异常。
        """
        raise NotImplementedError

    async def call_batched(self, backend: BatchBackend, request: AIRequest) -> dict[str, Any]:
        """调用一次后端，把同时期的摘要请求合并成一次调用（评分项 4）。

        `backend.complete_batch([请求1, 请求2, ...])` 一次调用返回与请求一一对应的结果列表；
        只合并 `request.request_type == "content_summary"` 的请求，其它类型直接
        `await backend.complete(request)`。返回的是这一个请求自己的结果。
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        """取消调度器自己创建的后台任务（等依赖的提交、批处理计时器……）并等它们结束。"""
        raise NotImplementedError
