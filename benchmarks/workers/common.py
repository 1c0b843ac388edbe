"""The command line every worker module shares, and the asyncio main-loop wrapper."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

from benchmarks.settings import IN_FLIGHT, KINDS, use_run_loop


def parse_args(description: str) -> argparse.Namespace:
    """--redis-url, --name (queue/namespace name), --kind, --concurrency, --probe, --option."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--name", required=True, help="queue name / namespace of this run")
    parser.add_argument("--kind", choices=KINDS, default="noop", help="what each task does")
    parser.add_argument("--concurrency", type=int, default=IN_FLIGHT, help="tasks in flight")
    parser.add_argument("--probe", required=True, help="Redis key prefix the probe reports to")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="ours only: ProcessorSettings(prefetch=N, prefetch_below_s=None) "
                             "(default: ProcessorSettings())")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of this queue's worker that differs from the column's (A/B runs)",
    )
    args = parser.parse_args()
    args.options = parse_options(args.option)
    use_run_loop()  # every worker module parses its arguments first
    return args


def parse_options(items: list[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` as `{"a": "1", "b": "x"}`; an item without "=" fails loudly."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option wants KEY=VALUE, got {item!r}")
        options[key] = value
    return options


def take_options(options: dict[str, str], known: dict[str, type]) -> dict[str, object]:
    """The options converted by `known` (name -> type); an unknown name fails loudly."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SystemExit(f"unknown worker option(s) {unknown}; known: {sorted(known)}")
    return {key: known[key](value) for key, value in options.items()}


def run_until_signalled(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on a new event loop; SIGTERM or SIGINT cancels it."""

    async def runner() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(runner())
