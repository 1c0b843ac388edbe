"""One adapter module per queue; `load_adapter` imports one lazily.

Lazy, so that a queue whose library is missing or broken (for instance our own while it is
being written) fails on its own and the runner can still report the others.
"""

from __future__ import annotations

import importlib

from benchmarks.adapters.base import QueueAdapter

ADAPTERS = {
    "ours": "benchmarks.adapters.ours_adapter:OursAdapter",
    "ours-prefetch": "benchmarks.adapters.ours_adapter:OursPrefetchAdapter",
    "arq": "benchmarks.adapters.arq_adapter:ArqAdapter",
    "saq": "benchmarks.adapters.saq_adapter:SaqAdapter",
    "taskiq": "benchmarks.adapters.taskiq_adapter:TaskiqAdapter",
    "taskiq-list": "benchmarks.adapters.taskiq_list_adapter:TaskiqListAdapter",
    "dramatiq": "benchmarks.adapters.dramatiq_adapter:DramatiqAdapter",
}


def load_adapter(queue: str) -> type[QueueAdapter]:
    """The adapter class for `queue` (one of ADAPTERS); raises if it cannot be imported."""
    module_name, _, class_name = ADAPTERS[queue].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["ADAPTERS", "QueueAdapter", "load_adapter"]
