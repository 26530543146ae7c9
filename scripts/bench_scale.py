"""Benchmark: the local runner vs the Ray runner, for annotation and for the causal fit, in one run.

    python scripts/bench_scale.py                          # sample x1 and x3 (45, 135 images), 20k simulated units
    python scripts/bench_scale.py --also-one-thread --units 100000 --tune --json out/bench_scale.json

Annotation: assets_sample/images (45 images) and ``--replicate`` copies of it (hard links) through
``vision.annotate.annotate_folder`` (one decoding process, models in this process with torch on every CPU) and
through ``vision.ray_runner.annotate_folder_ray`` on a local Ray instance of ``--ray-cpus`` CPUs (``--actors`` CPU
actors, one torch thread each), default ``conf/vision`` settings except ``vision.part_size=--part-size`` (on a
CPU-only instance, parts are the Ray runner's unit of parallelism). Runs are interleaved (local, Ray, local, Ray)
so both see the same background load. Reported per runner: seconds per size, images/s on the larger size (Ray:
actor start-up and model loading included) and the marginal images/s between the two sizes (fixed costs cancel),
and the largest difference between the local and the Ray tables (0 with equal torch thread counts; see
``--also-one-thread``, which adds the local runner with one torch thread).

Driver share (``--actor-counts 1,2,4``): the Ray runner on the replicated sample with 1, 2, 4, ... actors sharing
``--ray-cpus`` CPUs (many small actors on one machine stand in for a cluster). The actors write their own Parquet
parts, the driver only reads a manifest per part: printed per actor count are the wall seconds per image, the
driver process's CPU seconds per image (``getrusage``: Ray's driver threads included), its share of the time per
image and the actors' own Parquet-writing seconds per image (what a driver that wrote every part would have spent
on writing alone, before unpickling the rows). The driver's CPU is mostly Ray Data's scheduling loop, which runs
as long as the run lasts whatever the number of images; its per-row work is one small JSON manifest per part.

Causal: the nuisance cross-fit (``causal.nuisance.CrossFitNuisance``: ``--folds`` folds x (XGBoost propensity +
outcome), grid search included with ``--tune``) with ``use_ray=false`` and ``use_ray=true`` (one Ray task per
fold) on a simulated catalog (``causal.simulate``), then the causal forest; seconds of each and the largest
absolute difference between the two fits (0 when the numbers are the same).

Ratios are Ray / local throughput (annotation) and local / Ray seconds (causal): > 1 means Ray was faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets_sample" / "images"


def replicate(src: Path, dst: Path, times: int) -> int:
    """``times`` copies (hard links) of every image under ``src``, ids prefixed by the copy number."""
    from vision.io import find_images

    n = 0
    for k in range(times):
        for p in find_images(src):
            target = dst / f"copy{k:02d}" / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.hardlink_to(p)
            except OSError:
                shutil.copy2(p, target)
            n += 1
    return n


def compose_annotate(overrides: list[str]):
    """conf/annotate.yaml with runner=ray and the ray node, whether or not annotate.yaml lists those groups."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        try:
            return compose(config_name="annotate", overrides=["runner=ray", "ray=default", *overrides])
        except ConfigCompositionException:
            return compose(config_name="annotate", overrides=["+runner=ray", "+ray=default", *overrides])


def max_differences(a, b) -> dict[str, float]:
    """Largest absolute difference per column of two tables with the same rows (0: identical; inf: a string, a
    null or a row count differs). List columns (embeddings, landmarks) are compared element-wise."""
    import numpy as np
    import pandas as pd

    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return {"shape": float("inf")}
    out = {}
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            xv = x.to_numpy(dtype=np.float64, na_value=np.nan)
            yv = y.to_numpy(dtype=np.float64, na_value=np.nan)
            same_nulls = np.array_equal(np.isnan(xv), np.isnan(yv))
            out[c] = float(np.nanmax(np.abs(xv - yv), initial=0.0)) if same_nulls else float("inf")
        elif x.map(lambda v: v is not None and not isinstance(v, str) and np.ndim(v) == 1).any():
            d = 0.0
            for p, q in zip(x, y, strict=True):
                if (p is None) != (q is None) or (p is not None and len(p) != len(q)):
                    d = float("inf")
                    break
                if p is not None and len(p):
                    d = max(d, float(np.max(np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)))))
            out[c] = d
        else:
            out[c] = 0.0 if x.astype(object).equals(y.astype(object)) else float("inf")
    return out


def bench_annotation(args: argparse.Namespace, work: Path) -> dict:
    import pandas as pd

    from vision.annotate import annotate_folder, annotator_from_config, folder_options
    from vision.device import configure_threads
    from vision.ray_runner import annotate_folder_ray

    sizes = {}
    for copies in sorted({1, args.replicate}):
        sizes[copies] = replicate(SAMPLE, work / f"in{copies}", copies)
    overrides = [
        "input=unused",
        "output=unused",
        f"vision.part_size={args.part_size}",
        f"runner.actors={args.actors}",
        f"runner.num_cpus_per_actor={args.ray_cpus / args.actors:g}",
        *args.override,
    ]
    cfg = compose_annotate(overrides)
    v = cfg.vision
    out: dict = {
        "images": sizes,
        "settings": {"part_size": v.part_size, "batch_size": v.batch_size, "actors": args.actors},
    }
    annotators = {"local": annotator_from_config(v)}
    if args.also_one_thread:
        # The local runner with one torch thread: separates intra-op threading from Ray's process parallelism.
        annotators["local_1thread"] = annotator_from_config(
            compose_annotate([*overrides, "vision.num_threads=1"]).vision
        )
    configure_threads(v.num_threads)
    seconds: dict[str, dict[int, float]] = {name: {} for name in (*annotators, "ray")}
    # Interleaved (local, ray, local, ray) so both runners see the same background load on a shared machine.
    for copies in sizes:
        folder = work / f"in{copies}"
        for name, annotator in annotators.items():
            configure_threads(1 if name == "local_1thread" else v.num_threads)
            local = annotate_folder(folder, work / f"{name}{copies}", annotator, **folder_options(v))
            seconds[name][copies] = local.seconds
        seconds["ray"][copies] = annotate_folder_ray(folder, work / f"ray{copies}", v, None, cfg.runner).seconds
    big, small = max(sizes), min(sizes)
    for runner, secs in seconds.items():
        out[runner] = {
            "seconds": secs,
            "images_per_s": sizes[big] / secs[big],
            # Marginal rate between the two sizes: fixed costs (actor start-up, model loading) cancel out.
            "marginal_images_per_s": (
                (sizes[big] - sizes[small]) / (secs[big] - secs[small]) if big != small else float("nan")
            ),
        }
    for name in annotators:
        out[f"max_abs_difference_{name}_vs_ray"] = {
            table: {
                k: d
                for k, d in max_differences(
                    pd.read_parquet(work / f"{name}{big}" / table), pd.read_parquet(work / f"ray{big}" / table)
                ).items()
                if d > 0
            }
            for table in ("images", "faces")
        }
    return out


def bench_driver(args: argparse.Namespace, work: Path) -> dict:
    """The Ray runner's driver cost per image as actors are added (see the module docstring)."""
    import resource

    from vision.ray_runner import annotate_folder_ray

    n = replicate(SAMPLE, work / "driver-in", args.replicate)
    out = {"images": n, "by_actors": {}}
    for actors in args.actor_counts:
        cfg = compose_annotate(
            [
                "input=unused",
                "output=unused",
                f"vision.part_size={args.part_size}",
                f"runner.actors={actors}",
                # Half a CPU stays for the decoding tasks: an instance whose CPUs all go to actors never decodes.
                f"runner.num_cpus_per_actor={(args.ray_cpus - 0.5) / actors:g}",
                "runner.decode_num_cpus=0.5",
                *args.override,
            ]
        )
        before = resource.getrusage(resource.RUSAGE_SELF)
        summary = annotate_folder_ray(work / "driver-in", work / f"driver-out{actors}", cfg.vision, None, cfg.runner)
        after = resource.getrusage(resource.RUSAGE_SELF)
        driver_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        per_image = summary.seconds / n
        out["by_actors"][actors] = {
            "seconds": summary.seconds,
            "wall_s_per_image": per_image,
            "driver_cpu_s_per_image": driver_cpu / n,
            "driver_share": driver_cpu / summary.seconds,
            "actor_write_s_per_image": summary.stage_seconds.get("write", 0.0) / n,
        }
    return out


def print_driver(d: dict) -> None:
    print(f"\nRay driver cost, {d['images']} images (actors write their own parts)")
    print(f"{'actors':>6}{'wall ms/img':>13}{'driver CPU ms/img':>19}{'driver share':>14}{'actor write ms/img':>20}")
    for actors, r in d["by_actors"].items():
        print(
            f"{actors:>6}{1e3 * r['wall_s_per_image']:>13.1f}{1e3 * r['driver_cpu_s_per_image']:>19.2f}"
            f"{r['driver_share']:>14.1%}{1e3 * r['actor_write_s_per_image']:>20.2f}"
        )


def bench_causal(args: argparse.Namespace) -> dict:
    import numpy as np
    from hydra import compose, initialize_config_dir

    from causal import dml
    from causal.nuisance import from_config as nuisance_from_config
    from causal.pipeline import build_dataset, to_plain

    overrides = [
        f"data.n_titles={max(args.units // 10, 1)}",
        "data.artworks_per_title=10",
        f"nuisance={'xgboost_grid' if args.tune else 'xgboost'}",
        f"nuisance.folds={args.folds}",
        "estimator=causal_forest",
        f"n_jobs={args.n_jobs}",
        f"seed={args.seed}",
    ]
    cfgs = {}
    for use_ray in (False, True):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfgs[use_ray] = compose(config_name="config", overrides=[*overrides, f"estimator.use_ray={use_ray}"])
    ds, _ = build_dataset(cfgs[False])
    extra = [c for c in ds.X.columns if c not in ds.W.columns]
    features = np.column_stack([ds.W.to_numpy(np.float64), ds.X[extra].to_numpy(np.float64)]) if extra else ds.W
    out: dict = {"units": int(len(ds.y)), "features": int(features.shape[1]), "folds": args.folds, "tune": args.tune}
    fits = {}
    # Interleaved rounds (local, Ray, local, Ray, ...) against background load; the fastest round is reported.
    for _ in range(args.rounds):
        for use_ray, cfg in cfgs.items():
            model = nuisance_from_config(cfg.nuisance, seed=args.seed)
            start = time.perf_counter()
            model.fit(features, ds.t, ds.y)
            nuisance_seconds = time.perf_counter() - start
            start = time.perf_counter()
            fit = dml.estimate(
                to_plain(cfg.estimator),
                y=ds.y,
                t=ds.t,
                X=ds.X,
                propensity=model.propensity_,
                outcome=model.outcome_,
                groups=ds.groups if ds.groups.shape[1] else None,
                alpha=0.05,
                seed=args.seed,
            )
            record = {
                "nuisance_seconds": nuisance_seconds,
                "tune_seconds": model.seconds_.get("tune", 0.0),
                "crossfit_seconds": model.seconds_["crossfit"],
                "forest_seconds": time.perf_counter() - start,
                "ate": fit.results["ate"]["estimate"],
            }
            name = "ray" if use_ray else "local"
            if name not in out or record["nuisance_seconds"] < out[name]["nuisance_seconds"]:
                out[name] = record
            fits[use_ray] = (model, fit)
    out["max_abs_diff_propensity"] = float(np.max(np.abs(fits[True][0].propensity_ - fits[False][0].propensity_)))
    out["max_abs_diff_outcome"] = float(np.max(np.abs(fits[True][0].outcome_ - fits[False][0].outcome_)))
    out["ate_diff"] = abs(fits[True][1].results["ate"]["estimate"] - fits[False][1].results["ate"]["estimate"])
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicate", type=int, default=3, help="copies of the 45-image sample (default 3)")
    ap.add_argument("--part-size", type=int, default=16, help="vision.part_size of both runners (default 16)")
    ap.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    ap.add_argument("--actors", type=int, default=2, help="annotation actors (default 2)")
    ap.add_argument("--actor-counts", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4],
                    help="actor counts of the driver-share measurement (default 1,2,4)")  # fmt: skip
    ap.add_argument("--also-one-thread", action="store_true", help="also time the local runner with 1 torch thread")
    ap.add_argument("--units", type=int, default=20000, help="simulated artworks for the causal fit")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--tune", action="store_true", help="include the nuisance grid search (nuisance=xgboost_grid)")
    ap.add_argument("--n-jobs", type=int, default=1, help="threads per XGBoost model / forest")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="causal fits per runner; the fastest is reported")
    ap.add_argument("--skip", choices=["annotation", "driver", "causal"], action="append", default=[])
    ap.add_argument("--override", action="append", default=[], help="extra annotate.yaml override, repeatable")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    return ap


def _run(args: argparse.Namespace) -> dict:
    """Every measurement asked for, on a local Ray instance started here."""
    try:
        import ray
    except ImportError:
        sys.exit('Ray is not installed: pip install -e ".[ray]"')
    results: dict = {"cpus_visible": len(os.sched_getaffinity(0)), "load_average_start": os.getloadavg()}
    start = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    results["ray_init_seconds"] = time.perf_counter() - start
    try:
        with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
            if "annotation" not in args.skip:
                results["annotation"] = bench_annotation(args, Path(tmp))
            if "driver" not in args.skip:
                results["driver"] = bench_driver(args, Path(tmp))
            if "causal" not in args.skip:
                results["causal"] = bench_causal(args)
    finally:
        ray.shutdown()
    results["load_average_end"] = os.getloadavg()

    return results


def _print_annotation(a: dict, actors: int) -> None:
    lo, ra = a["local"], a["ray"]
    n = max(a["images"].values())
    print(f"\nannotation, default vision config, part_size {a['settings']['part_size']}; Ray: {actors} CPU actors")
    print(
        f"{'runner':<8}"
        + "".join(f"{f'{k} img s':>12}" for k in a["images"].values())
        + f"{'img/s':>8}{'marginal':>10}"
    )
    for name, r in ((k, a[k]) for k in ("local", "local_1thread", "ray") if k in a):
        row = "".join(f"{s:>12.1f}" for s in r["seconds"].values())
        print(f"{name:<8}{row}{r['images_per_s']:>8.2f}{r['marginal_images_per_s']:>10.2f}")
    print(
        f"ratio ray/local images/s on {n} images: {ra['images_per_s'] / lo['images_per_s']:.2f} (whole run), "
        f"{ra['marginal_images_per_s'] / lo['marginal_images_per_s']:.2f} (marginal)"
    )
    for name in ("local", "local_1thread"):
        if f"max_abs_difference_{name}_vs_ray" in a:
            diffs = {t: d for t, d in a[f"max_abs_difference_{name}_vs_ray"].items() if d}
            verdict = "identical" if not diffs else "columns that differ (max |diff|): " + json.dumps(diffs)
            print(f"{name} vs ray outputs: {verdict}")


def _print_causal(c: dict) -> None:
    lo, ra = c["local"], c["ray"]
    print(f"\ncausal fit on {c['units']} units x {c['features']} features, {c['folds']} folds, tune={c['tune']}")
    print(f"{'runner':<8}{'nuisance s':>11}{'crossfit s':>11}{'forest s':>10}{'ATE':>10}")
    for name, r in (("local", lo), ("ray", ra)):
        print(
            f"{name:<8}{r['nuisance_seconds']:>11.2f}{r['crossfit_seconds']:>11.2f}{r['forest_seconds']:>10.2f}"
            f"{r['ate']:>10.5f}"
        )
    print(
        f"ratio local/ray seconds: nuisance {lo['nuisance_seconds'] / ra['nuisance_seconds']:.2f}, "
        f"cross-fit {lo['crossfit_seconds'] / ra['crossfit_seconds']:.2f}; max |diff| propensity "
        f"{c['max_abs_diff_propensity']:.1e}, outcome {c['max_abs_diff_outcome']:.1e}, ATE {c['ate_diff']:.1e}"
    )


def main() -> None:
    args = _parser().parse_args()
    results = _run(args)
    print(f"Ray: local instance, {args.ray_cpus} CPUs, started in {results['ray_init_seconds']:.1f} s")
    if "annotation" in results:
        _print_annotation(results["annotation"], args.actors)
    if "driver" in results:
        print_driver(results["driver"])
    if "causal" in results:
        _print_causal(results["causal"])
    print(f"\nload average (1, 5, 15 min) at start {results['load_average_start']}, end {results['load_average_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
