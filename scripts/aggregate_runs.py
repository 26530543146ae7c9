"""Collect a sweep's results.json files into one table (CSV + printed), with each run's overrides.

python scripts/run_experiment.py -m estimator=linear_dml,causal_forest seed=1,2 hydra/launcher=joblib
python scripts/aggregate_runs.py multirun/2026-11-22/21-00-00            # writes <sweep>/aggregate.csv
python scripts/aggregate_runs.py multirun/2026-11-22/21-00-00 --out table.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from causal.aggregate import collect_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun folder (or any folder of run folders)")
    parser.add_argument("--out", type=Path, default=None, help="CSV path (default: SWEEP_DIR/aggregate.csv)")
    args = parser.parse_args(argv)
    try:
        table = collect_runs(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = args.out or args.sweep_dir / "aggregate.csv"
    table.to_csv(out, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.5g}".format):
        print(table.to_string(index=False))
    print(f"\n{len(table)} runs -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
