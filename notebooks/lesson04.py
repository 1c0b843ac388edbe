"""Helpers for notebook 04: run a sweep of simulations and reduce each report to one row."""

from __future__ import annotations

from typing import Any

from chatroom_async import SimulationReport, simulate_async


def row(report: SimulationReport) -> dict[str, Any]:
    """The few figures notebook 04 plots, rounded, from one report."""
    errors = report.backend["errors"]
    return {
        "concurrency": report.config["concurrency"],
        "throughput": round(report.throughput["steady_per_s"] or 0.0, 2),
        "p50_s": round(report.latency["overall"]["p50"], 1),
        "p95_s": round(report.latency["overall"]["p95"], 1),
        "rejected_429": errors.get("concurrency_limit", 0) + errors.get("frequency_limit", 0),
        "failed": report.totals["failed"],
    }


async def sweep(concurrencies: list[int], **config: Any) -> list[dict[str, Any]]:
    """One simulation per concurrency, the other `SimulationConfig` fields as given."""
    return [row(await simulate_async(concurrency=c, **config)) for c in concurrencies]


def print_rows(rows: list[dict[str, Any]]) -> None:
    """The rows as a small fixed-width table."""
    print("  ".join(f"{k:>12}" for k in rows[0]))
    for r in rows:
        print("  ".join(f"{v:>12}" for v in r.values()))
