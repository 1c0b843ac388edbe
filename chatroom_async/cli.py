"""The `chatroom-async` command: demo, worker, submit, status, cancel, stats, simulate,
sim-server, grade.

Every error is one line on stderr and an exit code (`cli_errors` lists them).

Worker processes started here share one queue through Redis with any number of others:
with a pull-based queue the balancing is the queue itself (the chapter's 负载均衡 box).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from . import cli_errors, eventloop
from .backend import AIBackend, AIRequest, FunctionBackend, InstantBackend
from .errors import TaskNotFoundError
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
    `openai` (configured by `args` and the environment: docs/providers.md), or
    `import:MODULE:NAME` (NAME in MODULE: a backend, or a callable returning one)."""
    name, _, arg = spec.partition(":")
    if name == "instant" and not arg:
        return InstantBackend()
    if name == "sleep":
        seconds = cli_errors.non_negative_float(arg or "0.1")

        async def sleeper(req: AIRequest) -> dict[str, Any]:
            await asyncio.sleep(seconds)
            return {"response": "ok", "slept": seconds}

        return FunctionBackend(sleeper)
    if name == "simulated":
        from .simulated import PROFILES, SimulatedAIBackend

        if (arg or "realistic") not in PROFILES:
            raise argparse.ArgumentTypeError(f"unknown simulated profile {arg!r}; use one "
                                             f"of {', '.join(PROFILES)}")
        return SimulatedAIBackend.from_profile(arg or "realistic", seed=seed)
    if name == "openai" and args is not None:
        backend: AIBackend = backend_from_args(args)
        return backend
    if name == "import":
        return _imported_backend(arg)
    raise argparse.ArgumentTypeError(f"unknown backend {spec!r}; use instant, sleep:SECONDS, "
                                     "simulated[:PROFILE], openai or import:MODULE:NAME")


def _imported_backend(target: str) -> AIBackend:
    module_name, _, attr = target.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"cannot import backend {target!r}: {exc}") from None
    backend = found if callable(getattr(found, "complete", None)) else found()
    if not callable(getattr(backend, "complete", None)):
        raise argparse.ArgumentTypeError(f"{target!r} gave {backend!r}, not a backend")
    return cast(AIBackend, backend)


def handler_spec(spec: str) -> Any:
    """`MODULE:NAME` -> an instance of the streaming handler class NAME (no arguments)."""
    handler = _instance(spec, "streaming handler")
    if not callable(getattr(handler, "handle_streaming_response", None)):
        raise argparse.ArgumentTypeError(f"{spec!r} has no handle_streaming_response method")
    return handler


def _instance(spec: str, what: str) -> Any:
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)()
    except Exception as exc:  # noqa: BLE001 - one line for the user, whatever went wrong
        raise argparse.ArgumentTypeError(
            f"cannot make a {what} from {spec!r}: {type(exc).__name__}: {exc}") from None


def scheduler_spec(spec: str) -> Any:
    """`MODULE:NAME` -> an instance of the scheduler class NAME (made with no arguments)."""
    scheduler = _instance(spec, "scheduler")
    if not callable(getattr(scheduler, "score", None)):
        raise argparse.ArgumentTypeError(f"{spec!r} has no score(task, user_context) method")
    return scheduler


def loop_choice(choice: str) -> str:
    """Check --loop at parse time: a name in `eventloop.LOOPS`, and uvloop installed if
    asked for by name."""
    try:
        eventloop.loop_factory(choice)
    except (ValueError, eventloop.LoopUnavailableError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return choice


def backend_spec(spec: str) -> str:
    """Check a --backend spec at parse time (the backend itself is built later; `openai`
    is checked then, with its options)."""
    if spec != "openai":
        make_backend(spec)
    return spec


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
    # A worker's start, and its drain and hand-back counts on stop, are worth a line each.
    logger = logging.getLogger("chatroom_async")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        await _serve(proc, stop, args)
    finally:
        logger.setLevel(level)
        close = getattr(backend, "aclose", None)  # a provider backend's HTTP connections
        if close is not None:
            await close()
    return 0


async def _serve(proc: AsyncAIProcessor, stop: asyncio.Event, args: argparse.Namespace) -> None:
    await proc.start()
    print(f"worker {proc.worker_id} running {args.concurrency} in flight on {args.redis_url} "
          f"namespace={args.namespace} loop={eventloop.loop_name()}", flush=True)
    await stop.wait()
    await proc.stop()


async def _with_client(args: argparse.Namespace,
                       action: Callable[[AsyncAIProcessor], Awaitable[Any]]) -> int:
    async with AsyncAIProcessor(args.redis_url, max_workers=0, namespace=args.namespace) as p:
        result = await action(p)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return cli_errors.OK


async def run_submit(args: argparse.Namespace) -> int:
    async with AsyncAIProcessor(args.redis_url, max_workers=0, namespace=args.namespace) as p:
        task_id = await p.submit_task(args.user_id, args.type, args.data,
                                      priority=args.priority, timeout=args.timeout)
        if not args.wait:
            print(json.dumps({"task_id": task_id}))
            return cli_errors.OK
        final = await p.wait_for_task(task_id, args.wait)
    print(json.dumps(final, ensure_ascii=False, indent=2))
    if final["status"] == "completed":
        return cli_errors.OK
    return cli_errors.fail(f"task {task_id} {final['status']}: {final.get('error_type')}: "
                           f"{final.get('error_message')}", cli_errors.NOT_COMPLETED)


async def run_status(args: argparse.Namespace) -> int:
    async def status(p: AsyncAIProcessor) -> Any:
        found = await p.get_task_status(args.task_id)
        if found is None:
            raise TaskNotFoundError(f"no task {args.task_id!r}")
        return found
    return await _with_client(args, status)


async def run_cancel(args: argparse.Namespace) -> int:
    async with AsyncAIProcessor(args.redis_url, max_workers=0, namespace=args.namespace) as p:
        if await p.cancel_task(args.task_id):
            print("true")
            return cli_errors.OK
        found = await p.get_task_status(args.task_id)
    if found is None:
        raise TaskNotFoundError(f"no task {args.task_id!r}")
    print("false")
    return cli_errors.fail(f"task {args.task_id} has already finished ({found['status']}); "
                           "there is nothing to cancel", cli_errors.NOT_COMPLETED)


def build_parser() -> argparse.ArgumentParser:
    parser = cli_errors.OneLineParser(prog="chatroom-async", description=__doc__,
                                      epilog=EXIT_CODES,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the chapter's demo on the embedded fakeredis")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=EXIT_CODES,
                           formatter_class=_Formatter)
        p.add_argument("--redis-url", type=cli_errors.redis_url, default=DEFAULT_URL,
                       help="the Redis server (env CHATROOM_ASYNC_REDIS_URL)")
        p.add_argument("--namespace", type=cli_errors.namespace, default="chatroom_async",
                       help="prefix of every key: 1-64 characters of A-Z a-z 0-9 _ . -")
        return p

    w = command("worker", "run a worker process (SIGTERM or Ctrl-C: drain, then hand back)")
    w.add_argument("--concurrency", type=cli_errors.positive_int, default=10,
                   help="tasks in flight in this process; above the provider's own limit "
                        "the extra calls only meet 429s and wait (see README)")
    w.add_argument("--backend", type=backend_spec, default="simulated",
                   help="instant | sleep:SECONDS | simulated[:realistic|flaky|instant] | "
                        "openai | import:MODULE:NAME")
    w.add_argument("--lease", type=cli_errors.positive_float, default=30.0,
                   help="lease seconds: a dead worker's tasks run again this long after it")
    w.add_argument("--drain", type=cli_errors.positive_float, default=10.0,
                   help="seconds running tasks may finish on stop before they are handed back")
    w.add_argument("--seed", type=int, default=0, help="seed of the simulated backend")
    w.add_argument("--loop", type=loop_choice, default="auto",
                   help="event loop: auto (uvloop when installed, the `fast` extra) | asyncio "
                        "| uvloop")
    add_worker_options(w)
    g = w.add_argument_group("the provider's limits, shared by every worker of the namespace "
                             "(docs/providers.md): each call waits its turn instead of a 429")
    g.add_argument("--provider-rpm", type=cli_errors.per_minute,
                   help="requests per minute (default: none)")
    g.add_argument("--provider-tpm", type=cli_errors.per_minute,
                   help="tokens per minute (default: none)")
    g.add_argument("--provider-concurrency", type=cli_errors.positive_int,
                   help="calls in flight at once (default: none)")
    s = command("submit", "submit one request")
    s.add_argument("--user-id", type=cli_errors.user_id, default=1,
                   help="an int >= 1, or a string id (1-128 characters)")
    s.add_argument("--type", default="chat_completion",
                   help="chat_completion | content_summary | translation")
    s.add_argument("--data", type=cli_errors.json_object, default='{"message": "你好"}',
                   help="request_data as a JSON object")
    s.add_argument("--priority", default="normal", help="low | normal | high | urgent")
    s.add_argument("--timeout", type=cli_errors.positive_float, default=30.0,
                   help="seconds one attempt may take")
    s.add_argument("--wait", type=cli_errors.non_negative_float, default=0.0,
                   help="wait up to this many seconds for the result (0: do not wait)")
    for name in ("status", "cancel"):
        command(name, f"{name} a task").add_argument("task_id", help="the task's id")
    command("stats", "print the shared statistics")
    _add_serve_parser(sub)
    try:
        from .simulation import add_simulate_parser
    except ImportError:  # pragma: no cover - the simulator ships with the package
        pass
    else:
        add_simulate_parser(sub).add_argument(
            "--plot", metavar="PNG", help="also draw the report's dashboard panels into this "
            "PNG file (needs the notebooks extra: matplotlib)")
    add_sim_server_parser(sub)
    sub.choices["sim-server"].formatter_class = _Formatter  # --help shows its defaults
    from .grading.runner import add_grade_parser

    add_grade_parser(sub)
    return parser


def _add_serve_parser(sub: Any) -> None:
    """`serve`: the chat room (chatroom_async/chat, imported only when it runs)."""
    c = sub.add_parser("serve", help="run the chat room (the `chat` extra: FastAPI, uvicorn)",
                       description="The chat room of docs/chat-room.md: one page, one "
                                   "WebSocket endpoint.", formatter_class=_Formatter)
    c.add_argument("--redis-url", type=cli_errors.redis_url, default=None,
                   help="a Redis URL; unset: the embedded fakeredis, in this process only")
    c.add_argument("--namespace", type=cli_errors.namespace, default="chatroom_async",
                   help="prefix of every key: 1-64 characters of A-Z a-z 0-9 _ . -")
    c.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    c.add_argument("--port", type=int, default=8000, help="the port to listen on")
    c.add_argument("--workers", type=_non_negative_int, default=4,
                   help="tasks this process runs itself (0: only `worker` processes do)")
    c.add_argument("--profile", default="realistic",
                   help="the simulated AI's profile: realistic | flaky | instant")
    c.add_argument("--seed", type=int, default=0, help="seed of the simulated AI")
    c.add_argument("--backend", type=backend_spec, default=None,
                   help="the AI this process's workers call, as for `worker` (e.g. openai, "
                        "with --base-url of a provider or of `chatroom-async sim-server`); "
                        "default: the simulated AI of --profile")
    c.add_argument("--handler", type=handler_spec, default=None, metavar="MODULE:NAME",
                   help="a streaming handler class whose pushes the page shows, e.g. "
                        "exercises.streaming:StreamingResponseHandler, exercise 1")
    c.add_argument("--scheduler", type=scheduler_spec, default=None, metavar="MODULE:NAME",
                   help="a scheduling policy class (its score() orders the queue), e.g. "
                        "exercises.scheduling:IntelligentTaskScheduler, exercise 2")
    add_worker_options(c)


def _non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else cli_errors.positive_int(text)


def _run_chat_room(args: argparse.Namespace) -> int:
    try:
        from .chat.serve import run as serve
    except ImportError as exc:
        return cli_errors.fail(f"chatroom-async serve needs the chat extra ({exc}): "
                               "pip install 'chatroom_async[chat]'", cli_errors.USAGE)
    if args.backend:  # one backend for the whole process (it may hold HTTP connections)
        args.ai_backend = make_backend(args.backend, args.seed, args)
    if args.handler is not None:  # exercise 1: the page shows what the handler pushes
        from .grading import HandlerStreamBackend
        from .simulated import SimulatedAIBackend

        inner = args.ai_backend if args.backend else SimulatedAIBackend.from_profile(
            args.profile, seed=args.seed)
        args.ai_backend = HandlerStreamBackend(inner, args.handler)
    return serve(args)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows every default, and the exit codes as written."""


EXIT_CODES = "exit codes:" + (cli_errors.__doc__ or "").split("Exit codes of `chatroom-async`:")[1]


def _simulate_with_plot(args: argparse.Namespace) -> int:
    try:
        from .dashboard.plot_command import run_simulate_plot
    except ImportError as exc:
        print(f"chatroom-async simulate --plot: {exc}", file=sys.stderr)
        return 2
    return run_simulate_plot(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from .demo import main as demo_main
        return demo_main(sys.stdout)
    if args.command == "sim-server":
        return run_sim_server(args)
    if args.command == "simulate" and args.plot:
        return _simulate_with_plot(args)
    if args.command == "simulate":
        from .simulation import run_simulate_command
        return run_simulate_command(args)
    if args.command == "grade":
        return int(args.handler(args))
    if args.command == "serve":
        return _run_chat_room(args)
    commands: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "worker": run_worker,
        "submit": run_submit,
        "status": run_status,
        "cancel": run_cancel,
        "stats": lambda a: _with_client(a, lambda p: p.get_stats()),
    }
    try:
        return eventloop.run(commands[args.command](args), getattr(args, "loop", "asyncio"))
    except KeyboardInterrupt:
        return cli_errors.fail("interrupted", cli_errors.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - explain() re-raises what it does not know
        return cli_errors.explain(exc, args.redis_url)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
