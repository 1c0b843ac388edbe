"""`chatroom-async simulate ... --plot out.png`: the simulation's report as the dashboard's
six panels in a PNG file, beside the usual text summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chatroom_async import simulate
from chatroom_async.simulation import config_from_args

from .replay import save_report_png


def run_simulate_plot(args: argparse.Namespace) -> int:
    """Run `simulate` with parsed arguments, print the summary (or JSON), write the plot.

    Returns 0, or 2 for invalid settings or a plot that cannot be written.
    """
    config = config_from_args(args)
    if config is None:
        return 2
    if not Path(args.plot).parent.is_dir():  # say so before the run, not after
        print(f"chatroom-async simulate: cannot write the plot {args.plot}: no such folder",
              file=sys.stderr)
        return 2
    report = simulate(config)
    if args.json:
        print(json.dumps(report.to_dict(include_wall_time=True), ensure_ascii=False, indent=1))
    else:
        print(report.summary())
    try:
        path = save_report_png(report, args.plot)
    except OSError as exc:
        print(f"chatroom-async simulate: cannot write the plot {args.plot}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    if not args.json:
        print(f"plot written to {path}")
    return 0
