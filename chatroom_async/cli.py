"""The `chatroom-async` command: demo, worker, submit, status, cancel, stats, simulate,
sim-server.

Worker processes started here share one queue through Redis with any number of others:
with a pull-based queue the balancing is the queue itself (the chapter's 负载均衡 box).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .backend import AIBackend, AIRequest, FunctionBackend, InstantBackend
from .processor import AsyncAIProcessor
from .providers.cli import (
    add_sim_server_parser,
    add_worker_options,
    backend_from_args,
    run_sim_server,
)
from .settings import ProcessorSettings, ProviderLimits

DEFAULT_URL = os.environ.get("CHATROOM_ASYNC_REDIS_URL", "redis://127.0.0.1:6379/0")


def make_backend(spec: str, seed: int = 0, args: argparse.Namespace | None = None) -> AIBackend:
    """A backend from a command-line spec: `instant`, `sleep:SECONDS`, `simulated[:PROFILE]`,
    `openai` (configured by `args` and the environment: docs/providers.md)."""
    name, _, arg = spec.partition(":")
    if name == "instant":
        return InstantBackend()
    if name == "sleep":
        seconds = float(arg or "0.1")

        async def sleeper(req: AIRequest) -> dict[str, Any]:
            await asyncio.sleep(seconds)
            return {"response": "ok", "slept": seconds}

        return FunctionBackend(sleeper)
    if name == "simulated":
        from .simulated import SimulatedAIBackend

        return SimulatedAIBackend.from_profile(arg or "realistic", seed=seed)
    if name == "openai" and args is not None:
        backend: AIBackend = backend_from_args(args)
        return backend
    raise argparse.ArgumentTypeError(f"unknown backend {spec!r}; "
                                     "use instant, sleep:SECONDS, simulated[:PROFILE] or openai")


async def run_worker(args: argparse.Namespace) -> int:
    limits = ProviderLimits(rpm=args.provider_rpm, tpm=args.provider_tpm,
                            max_concurrency=args.provider_concurrency)
    settings = ProcessorSettings(lease_s=args.lease, drain_timeout_s=args.drain,
                                 provider_limits=limits if limits.any else None)
    backend = make_backend(args.backend, args.seed, args)
    proc = AsyncAIProcessor(args.redis_url, max_workers=args.concurrency, backend=backend,
                            namespace=args.namespace, settings=settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await proc.start()
    print(f"worker {proc.worker_id} running {args.concurrency} in flight on {args.redis_url} "
          f"namespace={args.namespace}", flush=True)
    await stop.wait()
    await proc.stop()
    close = getattr(backend, "aclose", None)  # a provider backend's HTTP connections
    if close is not None:
        await close()
    return 0


async def _with_client(args: argparse.Namespace,
                       action: Callable[[AsyncAIProcessor], Awaitable[Any]]) -> int:
    async with AsyncAIProcessor(args.redis_url, max_workers=0, namespace=args.namespace) as p:
        result = await action(p)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0 if result not in (None, False) else 1


async def run_submit(args: argparse.Namespace) -> int:
    async def submit(p: AsyncAIProcessor) -> Any:
        task_id = await p.submit_task(args.user_id, args.type, json.loads(args.data),
                                      priority=args.priority, timeout=args.timeout)
        return await p.wait_for_task(task_id, args.wait) if args.wait else {"task_id": task_id}
    return await _with_client(args, submit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatroom-async", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the chapter's demo on the embedded fakeredis")

    def redis_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--redis-url", default=DEFAULT_URL)
        p.add_argument("--namespace", default="chatroom_async")
        return p

    w = redis_args(sub.add_parser("worker", help="run a worker process"))
    w.add_argument("--concurrency", type=int, default=10, help="tasks in flight")
    w.add_argument("--backend", default="simulated",
                   help="instant | sleep:SECONDS | simulated[:realistic|flaky|instant] | openai")
    w.add_argument("--lease", type=float, default=30.0, help="lease seconds")
    w.add_argument("--drain", type=float, default=10.0, help="drain seconds on stop")
    w.add_argument("--seed", type=int, default=0)
    add_worker_options(w)
    g = w.add_argument_group("the provider's limits, shared by every worker of the namespace "
                             "(docs/providers.md): each call waits its turn instead of a 429")
    g.add_argument("--provider-rpm", type=float, help="requests per minute (default: none)")
    g.add_argument("--provider-tpm", type=float, help="tokens per minute (default: none)")
    g.add_argument("--provider-concurrency", type=int,
                   help="calls in flight at once (default: none)")
    s = redis_args(sub.add_parser("submit", help="submit one request"))
    s.add_argument("--user-id", type=int, default=1)
    s.add_argument("--type", default="chat_completion")
    s.add_argument("--data", default='{"message": "你好"}', help="request_data as JSON")
    s.add_argument("--priority", default="normal")
    s.add_argument("--timeout", type=float, default=30.0)
    s.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds")
    for name in ("status", "cancel"):
        redis_args(sub.add_parser(name, help=f"{name} a task")).add_argument("task_id")
    redis_args(sub.add_parser("stats", help="print the shared statistics"))
    try:
        from .simulation import add_simulate_parser
    except ImportError:  # pragma: no cover - the simulator ships with the package
        pass
    else:
        add_simulate_parser(sub)
    add_sim_server_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from .demo import main as demo_main
        return demo_main(sys.stdout)
    if args.command == "sim-server":
        return run_sim_server(args)
    if args.command == "simulate":
        from .simulation import run_simulate_command
        return run_simulate_command(args)
    commands: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "worker": run_worker,
        "submit": run_submit,
        "status": lambda a: _with_client(a, lambda p: p.get_task_status(a.task_id)),
        "cancel": lambda a: _with_client(a, lambda p: p.cancel_task(a.task_id)),
        "stats": lambda a: _with_client(a, lambda p: p.get_stats()),
    }
    return asyncio.run(commands[args.command](args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
