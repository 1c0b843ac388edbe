"""练习1：流式响应处理（StreamingResponseHandler）。

你要写的是聊天室里“边生成边显示”的那一段：AI 后端一小块一小块地吐出回答
（`chatroom_async.StreamChunk`），你的处理器把它们实时推送给正在看这个任务的客户端
（WebSocket、笔记本单元格……），同时应对中断、取消、断线重连和慢客户端。

它运行在真实的处理器里：`HandlerBackend(后端, 你的处理器)` 是一个后端，工作者（Worker）
每次尝试调用它，它就打开后端的流并调用你的 `handle_streaming_response`。

你要用到的类型（都已写好，不用改）：
- `Frame(task_id, seq, kind, text="", error=None)`：推给客户端的一帧。kind 取值：
  "delta"（新文字）、"done"（回答完整结束）、"error"（流中途断开；text 是目前为止的部分
  文字，error 写原因）、"cancelled"（任务被取消；text 同上）、"retry"（同一任务的新一次
  尝试开始，客户端应丢弃上一次的文字）。
- `StreamClient`：客户端协议，只有一个方法 `async send(frame)`；客户端断开后 send 会抛出异常
  （如 ConnectionResetError）。
- `render(frames)`：客户端按顺序收到这些帧后，用户看到的文字。

评分（`chatroom-async grade streaming`，虚拟时间、固定脚本，共 100 分）：
1. 首字延迟（15 分）：首个文本在后端首个 chunk 之后 10 毫秒内推送给客户端。
2. 完整有序（15 分）：在真实处理器里运行；所有 delta 拼起来等于完整回答，seq 从 1 开始严格
   递增，以唯一一个 done 帧结束；返回最后一个 chunk 的 `result`（处理器把它存为任务结果）。
3. 合并推送（15 分）：后端每秒 200 个 chunk 时，任意 1 秒内推送的 delta 帧不超过 25 个，
   且每段文字从后端到达到推送出去不超过 100 毫秒。
4. 中断与重试（15 分）：流中途抛出 StreamInterruptedError 时，已收到的文字都已推送，最后
   一帧是带部分文字的 error 帧，异常继续抛给处理器（它会重试）；同一任务再次调用时先发
   retry 帧，帧序为 …error, retry, …done。
5. 及时取消（15 分）：协程被取消（`cancel_task` 或超时）时，在 10 毫秒内关闭后端的流
   （调用它的 `aclose()`），给客户端发带部分文字的 cancelled 帧，并让 CancelledError 继续抛出。
6. 断线续传（15 分）：某个客户端 send 抛异常不影响整个流；客户端带着最后收到的 seq 重新
   `attach` 时，从下一段文字补发，不丢不重；流结束后才连上的客户端（last_seq=0）也能收到全部
   文字和 done 帧。
7. 慢客户端（10 分）：一个每次 send 要 0.5 秒的客户端不拖慢工作者：后端最后一个 chunk 之后
   50 毫秒内 `handle_streaming_response` 返回；快、慢客户端最终都收到完整文字，seq 递增。

另外，每次 await 之间的同步代码不能超过 0.25 秒（真实时间），否则算阻塞事件循环。

教学内容见 `notebooks/08_exercise_streaming.ipynb`（各节标题与上面各项同名）。
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatroom_async import StreamChunk
from chatroom_async.grading import Frame, StreamClient  # noqa: F401  (Frame: 你会用到它)


class StreamingResponseHandler:
    """流式响应处理器：把后端的流实时推送给每个任务的客户端。

    一个处理器服务很多任务和很多客户端；构造函数不带必需参数（评分时用
    `StreamingResponseHandler()` 创建），可以自己加带默认值的关键字参数，比如合并推送的间隔。
    """

    def __init__(self) -> None:
        # 在这里准备你的状态：每个任务推送过的帧（续传要用）、每个任务的客户端……
        pass

    async def attach(self, task_id: str, client: StreamClient, last_seq: int = 0) -> None:
        """让 `client` 接收任务 `task_id` 的帧。

        可以在任务开始之前、进行之中或结束之后调用。先补发该任务 seq 大于 `last_seq` 的
        所有帧（第一次连接时 last_seq=0，即全部），再实时接收之后的新帧。同一个 client
        再次 attach 时，取代它之前的连接。

        Args:
            task_id: 任务 id。
            client: 有 `async send(frame)` 方法的客户端。
            last_seq: 客户端已经收到的最后一帧的 seq（评分项 6）。
        """
        raise NotImplementedError

    def detach(self, task_id: str, client: StreamClient) -> None:
        """不再给 `client` 推送任务 `task_id` 的帧（用户关掉了页面）。"""
        raise NotImplementedError

    async def handle_streaming_response(self, task_id: str,
                                        response_stream: AsyncIterator[StreamChunk]
                                        ) -> dict[str, Any]:
        """处理一次尝试的流式响应：读完 `response_stream`，边读边推送，返回最终结果。

        `response_stream` 是后端的流：`async for chunk in response_stream` 逐个得到
        `StreamChunk(index, text, finish_reason, usage, result)`；最后一个 chunk 的 `result`
        是完整结果（dict）。流归你管：无论正常结束、出错还是被取消，都要关闭它
        （`await response_stream.aclose()`，或 `contextlib.aclosing`）。

        Args:
            task_id: 任务 id（同一任务的重试会以同一个 id 再次调用）。
            response_stream: 后端的流。

        Returns:
            最后一个 chunk 的 result（评分项 2）。

        Raises:
            流抛出的异常（先发 error 帧，评分项 4）；CancelledError（先发 cancelled 帧，评分项 5）。
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        """停止处理器自己创建的所有后台任务（比如每个客户端的发送任务）并等它们结束。"""
        raise NotImplementedError
