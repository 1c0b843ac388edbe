"""Worker processes, one module per queue: `python -m benchmarks.workers.<queue> --help`.

Each builds its queue's worker through the queue's public API, registers one task `chat`
whose body is `benchmarks.probe.Probe.run_task`, marks itself ready and runs until it is
signalled. Logging is left unconfigured (WARNING) for every queue, so no per-task log
lines are written by any of them.
"""
