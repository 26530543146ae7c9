"""Calibration against randomised rows: does the bias interval cover the planted observational bias, over seeds?

    nice -n 10 python scripts/bench_calibration.py                   # 20 seeds, planted bias 0.02 and 0
    python scripts/bench_calibration.py --seeds 5 --deltas 0.02      # a quick look

Each seed simulates a catalog (``data.n_titles`` = 400, 4,000 artworks) with a 10% randomised explore share
(``explore_share=0.1``: a fair coin decides face_present on those rows), then raises the take rate of every treated
observational row by ``delta`` (an artefact the randomised rows do not share, e.g. selective logging), so the
observational AIPW effect exceeds the experimental one by exactly ``delta`` in expectation. The table runs through
``steps=[calibration]`` with the shipped defaults (``data=table``, ``data.randomised_column=explore``,
``data.cluster=title_id``: cluster-robust intervals). Printed per
delta: how often the bias interval covers ``delta`` (with its binomial standard error), the mean estimated bias, its
mean standard error and the interval's mean width, and how often the bias is called significant.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def planted_table(path: Path, delta: float, seed: int, n_titles: int, share: float) -> Path:
    from causal.simulate import simulate_catalog

    cat = simulate_catalog(n_titles=n_titles, seed=seed, explore_share=share)
    table = cat.data.drop(columns=[c for c in cat.data.columns if c.endswith("embedding")], errors="ignore")
    observational_treated = ~table["explore"] & table["face_present"].astype(bool)
    table.loc[observational_treated, "take_rate"] += delta
    table.to_parquet(path)
    return path


def run_one(delta: float, seed: int, n_titles: int, share: float, extra: tuple[str, ...] = ()) -> dict:
    from hydra import compose, initialize_config_dir

    from causal.pipeline import run

    with tempfile.TemporaryDirectory() as tmp:
        table = planted_table(Path(tmp) / "catalog.parquet", delta, seed, n_titles, share)
        # The table's artworks share title shocks: declare the clusters, as a user who knows their titles would.
        overrides = ["data=table", f"data.path={table}", "data.randomised_column=explore", "data.cluster=title_id"]
        overrides += ["steps=[calibration]", *extra]
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides + [f"seed={seed}"])
        return run(cfg, Path(tmp) / "run")["calibration"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--deltas", type=float, nargs="+", default=[0.02, 0.0])
    parser.add_argument("--n-titles", type=int, default=400)
    parser.add_argument("--share", type=float, default=0.1, help="randomised explore share")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides of the project's config")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    for delta in args.deltas:
        rows = []
        for seed in range(args.seeds):
            cal = run_one(delta, seed, args.n_titles, args.share, tuple(args.override))
            rows.append((cal["bias"], cal["bias_stderr"], cal["bias_ci_low"], cal["bias_ci_high"]))
            covers = cal["bias_ci_low"] <= delta <= cal["bias_ci_high"]
            print(
                f"delta {delta:+.3f} seed {seed:2d}: bias {cal['bias']:+.5f} [{cal['bias_ci_low']:+.5f},"
                f" {cal['bias_ci_high']:+.5f}] {'covers' if covers else 'MISSES'} ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
        bias, se, low, high = (np.array(v) for v in zip(*rows))
        cover = np.mean((low <= delta) & (delta <= high))
        binom = np.sqrt(max(cover * (1 - cover), 0.95 * 0.05) / len(bias))
        significant = np.mean((low > 0) | (high < 0))
        print(
            f"planted bias {delta:+.3f}, {len(bias)} seeds, {args.share:.0%} randomised: interval covers it in"
            f" {cover:.2f} (+- {binom:.2f}); mean bias {bias.mean():+.5f} (sd over seeds {bias.std(ddof=1):.5f},"
            f" mean se {se.mean():.5f}); mean width {(high - low).mean():.5f}; significant in {significant:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
