"""The graded exercises' support: the interfaces students code against (`kit`), and the
autograder (`chatroom-async grade`: `runner`, the pytest `plugin`, the graded `checks`).

Imports only the package's public API, like every edge of the package.
"""

from .kit import (
    FRAME_KINDS,
    IMPL_ENV,
    TERMINAL_KINDS,
    BatchBackend,
    Frame,
    HandlerBackend,
    HandlerStreamBackend,
    ScheduledBackend,
    StreamClient,
    find_root,
    load_exercise,
    render,
)

__all__ = ["FRAME_KINDS", "IMPL_ENV", "TERMINAL_KINDS", "BatchBackend", "Frame",
           "HandlerBackend", "HandlerStreamBackend", "ScheduledBackend", "StreamClient",
           "find_root", "load_exercise", "render"]
