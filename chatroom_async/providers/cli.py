"""The provider side of the `chatroom-async` command: `worker --backend openai` options and
the `sim-server` subcommand. `chatroom_async.cli` only registers them.

Errors in what the user typed (a missing model or key, an unknown setting, the extra not
installed) end the command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any, NoReturn

SIM_DEFAULT_PORT = 8100


def _fail(message: str) -> NoReturn:
    print(f"chatroom-async: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """The `--backend openai` flags of `worker` (each also has an environment variable)."""
    g = parser.add_argument_group(
        "--backend openai", "an OpenAI-compatible provider (docs/providers.md); flags win over "
        "CHATROOM_ASYNC_OPENAI_MODEL, CHATROOM_ASYNC_OPENAI_BASE_URL (or OPENAI_BASE_URL) "
        "and CHATROOM_ASYNC_OPENAI_API_KEY (or OPENAI_API_KEY)")
    g.add_argument("--model", help="model name, e.g. glm-4-flash")
    g.add_argument("--base-url", help="API root, e.g. https://open.bigmodel.cn/api/paas/v4")
    g.add_argument("--api-key", help="prefer the environment variable: a flag shows in `ps`")
    g.add_argument("--max-tokens", type=int, help="output cap when a request sets none")
    g.add_argument("--provider-timeout", type=float, dest="provider_timeout",
                   help="seconds for one HTTP call (the task's timeout usually ends it first)")
    g.add_argument("--task-headers", action="store_true",
                   help="send X-Chatroom-Task-Id/-Attempt (sim-server seeds outcomes by them)")


def backend_from_args(args: argparse.Namespace) -> Any:
    """An `OpenAIBackend` from the environment and the worker's flags."""
    try:
        from .config import ProviderConfigError
        from .openai_backend import OpenAIBackend
    except ModuleNotFoundError as exc:
        _fail(f"--backend openai needs {exc.name}: pip install \"chatroom_async[provider]\"")
    try:
        return OpenAIBackend.from_env(
            model=args.model, base_url=args.base_url, api_key=args.api_key,
            max_tokens=args.max_tokens, timeout_s=args.provider_timeout,
            task_headers=args.task_headers or None)
    except ProviderConfigError as exc:
        _fail(str(exc))


def add_sim_server_parser(sub: Any) -> None:
    """Register `chatroom-async sim-server`."""
    p = sub.add_parser("sim-server", help="serve the simulated LLM API over HTTP (loopback)",
                       description="The simulated LLM API as an OpenAI-compatible "
                       "POST /v1/chat/completions (JSON and SSE) on loopback.")
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1, ::1 or localhost")
    p.add_argument("--port", type=int, default=SIM_DEFAULT_PORT, help="0 picks a free port")
    p.add_argument("--profile", default="realistic", help="realistic | flaky | instant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="the model name served (default: the profile's)")
    p.add_argument("--api-key", help="require this Bearer key (default: accept any)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a SimSettings field, e.g. --set rpm=60 --set retry_after_s=1.5")
    p.add_argument("--log-level", default="info", help="uvicorn's: warning hides the access log")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` strings as settings: VALUE is JSON (1.5, null, true, ["x"]) or text."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            _fail(f"--set takes NAME=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        overrides[name.strip()] = tuple(value) if isinstance(value, list) else value
    return overrides


def run_sim_server(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    try:
        from chatroom_async.simulated import SimulatedAIBackend

        from .sim_server import SimServer
    except ModuleNotFoundError as exc:
        _fail(f"sim-server needs {exc.name}: pip install \"chatroom_async[provider]\"")
    overrides = parse_overrides(args.set)
    if args.model:
        overrides["model"] = args.model
    try:
        backend = SimulatedAIBackend.from_profile(args.profile, seed=args.seed, **overrides)
    except (TypeError, ValueError) as exc:
        _fail(str(exc))
    server = SimServer(backend, api_key=args.api_key)
    try:
        sock = server.bind(args.host, args.port)
    except (OSError, ValueError) as exc:
        _fail(f"cannot listen on {args.host}:{args.port}: {exc}")
    print(f"sim-server: profile {args.profile}, model {backend.settings.model}, seed "
          f"{args.seed}, serving {server.base_url} (Ctrl-C stops)", flush=True)
    asyncio.run(_serve_until_signal(server, sock, args.log_level))
    return 0


async def _serve_until_signal(sim: Any, sock: Any, log_level: str) -> None:
    """Serve until SIGINT or SIGTERM; then the calls in progress get a 503 and the server
    shuts down (exit status 0)."""
    server = sim.uvicorn_server(log_level=log_level, configure_logging=True)

    def stop() -> None:
        sim.cancel_calls()
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await server.serve(sockets=[sock])
