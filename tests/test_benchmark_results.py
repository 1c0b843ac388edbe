"""The benchmark docs print what the stored run measured, and the suite's verdicts can say no.

`docs/benchmarks.md` shows each whole-suite run's figures table and targets table; both must
be what `benchmarks.suite` computes from the JSON that run wrote (`benchmarks/results/`), so
that a figure edited by hand, or a change to how the suite merges steps or judges targets,
shows up here. No benchmark runs: the JSON is the evidence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import Results, load_json, table
from benchmarks.suite import merge_all, targets_table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "benchmarks" / "results"
#: each whole-suite run in the docs: its JSON, and the heading of its section
RUNS = [("2026-12-07-suite.json", "## Results: the whole suite, 2026-12-07"),
        ("2026-12-07-suite-b.json", "## Results: the whole suite on a slow day, 2026-12-07"),
        ("2026-12-07-suite-c.json",
         "## Results: the whole suite after the start-first flush, 2026-12-07"),
        ("2026-12-07-suite-d.json", "## Results: the whole suite on a second slow day, 2026-12-07"),
        ("2026-12-07-suite-e.json",
         "## Results: the whole suite on a day of middling speed, 2026-12-07"),
        ("2026-12-07-suite-f.json",
         "## Results: the whole suite with prefetch by default, 2026-12-07")]


def doc_tables(heading: str, after: str = "") -> list[str]:
    """The markdown tables (each as its lines joined) under a `## ` or `### ` heading (the
    first one after the heading `after`, if given), up to the next heading of any level."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(heading, text.index(after) if after else 0)
    section = re.split(r"\n#{2,3} ", text[start + len(heading):], maxsplit=1)[0]
    tables, current = [], []
    for line in section.splitlines():
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            tables.append("\n".join(current))
            current = []
    if current:
        tables.append("\n".join(current))
    return tables


Stored = tuple[Results, dict[str, Any], str]  # and the docs' heading of its section


@pytest.fixture(scope="module", params=RUNS, ids=[name for name, _ in RUNS])
def stored(request: pytest.FixtureRequest) -> Stored:
    name, heading = request.param
    results, meta = load_json(RESULTS / name)
    return results, meta, heading


def test_the_docs_figures_table_is_the_stored_runs(stored: Stored) -> None:
    results, _, heading = stored
    assert table(results) in doc_tables(heading)


def test_the_docs_targets_table_is_what_the_suite_judges(stored: Stored) -> None:
    results, _, heading = stored
    assert doc_tables("### The targets in this run", after=heading) == [targets_table(results)]


def test_the_steps_outputs_merge_into_the_stored_figures(stored: Stored) -> None:
    """Each step's own output, kept in the JSON, merges back into the figures it gave."""
    results, meta, _ = stored
    run = {"figures": {q: {k: v for k, v in f.items()
                           if not k.startswith(("goodput_", "crash_", "first_token", "chunk_",
                                                "writes_per"))}
                       for q, f in results.figures.items()},
           "errors": {}, "skipped": {}, "notes": []}
    merged = merge_all(list(meta["queues"]), {"run": run, **meta["steps"]})
    for queue, figures in results.figures.items():
        for key in ("goodput_share", "goodput_refused", "crash_lost", "crash_recovery_s",
                    "first_token_p99_ms"):
            if key in figures:
                assert merged.figures[queue][key] == figures[key], (queue, key)
    assert merged.figures["ours"]["goodput_refused"] == 0.0
    assert merged.figures["cookbook"]["goodput_share"] == pytest.approx(100.0, abs=0.5)


def test_a_target_ours_misses_is_judged_no() -> None:
    results = Results(queues=["ours", "saq"])
    results.figures = {"ours": {"io_efficiency": 97.5, "io1000_efficiency": 96.9,
                                "latency_p99": 2.0},
                       "saq": {"io_efficiency": 98.0, "latency_p99": 1.5}}
    verdicts = {line.split("|")[1].strip(): line.split("|")[-2].strip()
                for line in targets_table(results).splitlines()[2:]}
    assert verdicts["I/O efficiency, 100 in flight: >= 97 % by default and >= best peer"] \
        == "**no**"  # over 97 %, but behind the peer
    assert verdicts["I/O efficiency, 1,000 in flight: >= 97 % by default and >= best peer"] \
        == "**no**"  # no peer, under 97 %
    assert verdicts["pickup latency p99 no worse than the best peer"] == "**no**"
    assert verdicts["goodput >= 95 % of the provider's limit, 429s < 1 % of calls"] == "–"
