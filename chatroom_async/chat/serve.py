"""`chatroom-async serve`: the chat room under uvicorn, with its processor.

With `--redis-url` unset the processor runs on the embedded fakeredis with `--workers`
worker slots in the same process (a first try, one process); with a URL, web processes
(`--workers 0`) and `chatroom-async worker` processes share one Redis.
"""

from __future__ import annotations

import argparse

import uvicorn

from chatroom_async import AIBackend, AsyncAIProcessor, SimulatedAIBackend

from .app import create_app

#: The largest WebSocket message uvicorn reads; the app answers bigger-than-its-limit frames
#: below this with an error frame, and uvicorn closes the connection above it.
WS_MAX_BYTES = 65_536


def processor_factory(args: argparse.Namespace) -> AsyncAIProcessor:
    """The web process's processor: a client only (`--workers 0`) or client and workers,
    calling the simulated AI of `--profile`, or `--backend` (e.g. `openai`, configured as
    for `chatroom-async worker`), in the order of `--scheduler` when one is given."""
    backend: AIBackend | None = getattr(args, "ai_backend", None)  # built by the command line
    if backend is None:
        backend = SimulatedAIBackend.from_profile(args.profile, seed=args.seed)
    return AsyncAIProcessor(args.redis_url, max_workers=args.workers, backend=backend,
                            namespace=args.namespace,
                            scheduler=getattr(args, "scheduler", None))


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C)."""
    app = create_app(lambda: processor_factory(args))
    uvicorn.run(app, host=args.host, port=args.port, ws_max_size=WS_MAX_BYTES,
                log_level="info", access_log=False)  # it says "Uvicorn running on ..."
    return 0
