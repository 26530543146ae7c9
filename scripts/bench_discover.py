"""The hypothesis funnel (experiment=discover) against the simulator's planted effects, over many seeds.

    python scripts/bench_discover.py                    # 20 seeds, the experiment's defaults (3000 artworks)
    python scripts/bench_discover.py --seeds 5 --n-titles 200 --out bench_discover.json

Each seed simulates a catalog with the eight components of ``causal/simulate_components.py`` (two planted effects:
``text_area_fraction`` and ``figure_frontal``; none for the others, nor for the ``img_*`` colour columns) and runs
``steps: [discover]`` as shipped (``conf/experiment/discover.yaml``). Printed per seed and in total:

* whether each planted effect was tested, found significant after Holm's adjustment, and covered by its CI;
* false discoveries: hypotheses whose true effect is 0 but which are significant after adjustment;
* CI coverage of every hypothesis with a known truth (null ones included).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]


def run_seed(seed: int, n_titles: int | None) -> dict:
    from causal.pipeline import run

    overrides = ["experiment=discover", f"seed={seed}", "paths.cache=null"]
    if n_titles:
        overrides.append(f"data.n_titles={n_titles}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose("config", overrides=overrides)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        results = run(cfg, out)
        seconds = time.perf_counter() - start
    if results.get("errors"):
        raise RuntimeError(f"seed {seed}: {results['errors']}")
    planted = {f: v for f, v in results["truth"]["components"].items() if not isinstance(v, dict) and v != 0}
    rows = {h["feature"]: h for h in results["hypotheses"] if h.get("level") is None}
    found = {
        f: {
            "tested": f in rows,
            "significant": bool(rows.get(f, {}).get("significant", False)),
            "covers": bool(rows.get(f, {}).get("covers_truth", False)),
            "estimate": rows.get(f, {}).get("estimate"),
            "truth": v,
        }
        for f, v in planted.items()
    }
    scored = [h for h in results["hypotheses"] if "truth" in h]
    false = [
        h["feature"] + (f"={h['level']}" if h.get("level") else "")
        for h in scored
        if h["truth"] == 0 and h["significant"]
    ]
    return {
        "seed": seed,
        "seconds": seconds,
        "planted": found,
        "false_discoveries": false,
        "n_null_tested": sum(h["truth"] == 0 for h in scored),
        "n_scored": len(scored),
        "n_covered": sum(h["covers_truth"] for h in scored),
        "n_tested": results["discover"]["n_tested"],
        # every null hypothesis's z = estimate / stderr and p-value: their calibration tells chance from bias
        "nulls": [
            {
                "hypothesis": h["feature"] + (f"={h['level']}" if h.get("level") else ""),
                "z": h["estimate"] / h["stderr"] if h.get("stderr") else 0.0,
                "p_value": h["p_value"],
                "significant": bool(h["significant"]),
            }
            for h in scored
            if h["truth"] == 0
        ],
    }


def null_calibration(records: list[dict]) -> None:
    """Chance or bias? Under a true null z ~ N(0, 1) and p ~ U(0, 1): print the nulls' mean z (with its standard
    error), their SD, a Kolmogorov-Smirnov test of uniform p-values, the share of raw p < 0.05, and each null
    hypothesis's mean z over the seeds (a feature whose mean z is far from 0 is biased, not unlucky)."""
    import numpy as np
    from scipy import stats

    nulls = [h for r in records for h in r["nulls"]]
    if not nulls:
        return
    z = np.array([h["z"] for h in nulls])
    p = np.array([h["p_value"] for h in nulls])
    ks = stats.kstest(p, "uniform")
    print(
        f"  null calibration over {len(z)} null tests: mean z {z.mean():+.3f}"
        f" (se {z.std(ddof=1) / np.sqrt(len(z)):.3f}), sd z {z.std(ddof=1):.3f} (1 if calibrated),"
        f" raw p < 0.05 in {np.mean(p < 0.05):.3f},"
        f" KS test of uniform p: p = {ks.pvalue:.3f}"
    )
    by: dict[str, list[float]] = {}
    for h in nulls:
        by.setdefault(h["hypothesis"], []).append(h["z"])
    for name, values in sorted(by.items(), key=lambda kv: -abs(np.mean(kv[1]))):
        v = np.array(values)
        sd = v.std(ddof=1) if len(v) > 1 else 0.0
        print(f"    {name:<28} n {len(v):>2}  mean z {v.mean():+.2f}  sd {sd:.2f}  max |z| {np.abs(v).max():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n-titles", type=int, default=None, help="catalog titles (default: the experiment's)")
    parser.add_argument("--out", type=Path, default=None, help="write the per-seed records as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    records = []
    for seed in range(args.seeds):
        rec = run_seed(seed, args.n_titles)
        records.append(rec)
        planted = ", ".join(
            f"{f}: {'sig' if p['significant'] else 'NOT sig'}, {'covers' if p['covers'] else 'MISSES'} "
            f"({p['estimate']:+.4f} vs {p['truth']:+.4f})"
            for f, p in rec["planted"].items()
        )
        print(
            f"seed {seed:2d}: {planted}; false discoveries {rec['false_discoveries'] or 0} of "
            f"{rec['n_null_tested']} null tests; CI coverage {rec['n_covered']}/{rec['n_scored']} "
            f"({rec['seconds']:.0f}s)",
            flush=True,
        )
    n = len(records)
    features = list(records[0]["planted"])
    print(f"\n{n} seeds:")
    for f in features:
        sig = sum(r["planted"][f]["significant"] for r in records)
        cov = sum(r["planted"][f]["covers"] for r in records)
        print(f"  {f}: found (significant after Holm) {sig}/{n}, CI covers the truth {cov}/{n}")
    false = sum(len(r["false_discoveries"]) for r in records)
    null_tests = sum(r["n_null_tested"] for r in records)
    seeds_with_false = sum(bool(r["false_discoveries"]) for r in records)
    print(f"  false discoveries: {false} over {null_tests} null tests ({seeds_with_false}/{n} seeds with any)")
    covered = sum(r["n_covered"] for r in records)
    scored = sum(r["n_scored"] for r in records)
    print(f"  CI coverage of every hypothesis with a known truth: {covered}/{scored} = {covered / scored:.3f}")
    print(f"  seconds per run: {sum(r['seconds'] for r in records) / n:.1f}")
    null_calibration(records)
    if args.out:
        args.out.write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
