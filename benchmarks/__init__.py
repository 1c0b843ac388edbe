"""Benchmarks: our queue against arq, SAQ and Taskiq on a real Redis.

Run `python -m benchmarks.run --help`; docs/benchmarks.md describes the workloads.
"""
