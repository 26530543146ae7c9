"""Run a causal experiment from config: data -> screening -> overlap -> DML (-> mediation -> sensitivity).

Examples
--------
python scripts/run_experiment.py                                   # simulator, causal forest, tuned XGBoost
python scripts/run_experiment.py experiment=face_presence estimator=linear_dml seed=3
python scripts/run_experiment.py data=table data.path=my.csv roles.treatment=t roles.outcome=y \
    'roles.confounders=[a,b,c]' 'roles.groups=[g]' hydra.run.dir=out/run1

Outputs land in Hydra's run directory: results.json, truth.json (simulated data), timings.json, PNG plots and the
resolved config under .hydra/.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from causal.data import DataError
from causal.pipeline import run


def _fmt(value: object, digits: int = 5) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def summary_lines(results: dict) -> list[str]:
    """A short human-readable table of the headline numbers."""
    lines = [f"{results['treatment']} -> {results['outcome']}: {results['n_used']} of {results['n_units']} units used"]
    rows = []
    naive = results.get("naive")
    if naive:
        rows.append(("naive difference", naive["difference_in_means"], naive["ci_low"], naive["ci_high"]))
    for key, label in (("ate", "ATE (doubly robust)"), ("ate_partially_linear", "partially linear (var-weighted)")):
        if results.get(key):
            r = results[key]
            rows.append((label, r["estimate"], r["ci_low"], r["ci_high"]))
    truth = results.get("truth") or {}
    if "ate" in truth:
        rows.append(("true ATE (simulator)", truth.get("ate_used", truth["ate"]), None, None))
    if rows:
        lines.append(f"{'':34s}{'estimate':>12s}{'95% CI':>26s}")
        for label, est, lo, hi in rows:
            ci = f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None else ""
            lines.append(f"{label:34s}{_fmt(est):>12s}{ci:>26s}")
    for col, levels in (results.get("cate_by_group") or {}).items():
        cells = ", ".join(f"{r['level']} {_fmt(r['estimate'], 3)}" for r in levels)
        lines.append(f"CATE by {col}: {cells}")
    het = (results.get("heterogeneity") or {}).get("blp") or {}
    if het.get("beta_het"):
        lines.append(
            f"heterogeneity (BLP slope): {_fmt(het['beta_het']['estimate'], 3)}, p = {_fmt(het['p_value'], 3)}"
        )
    ov = results.get("overlap")
    if ov:
        lines.append(
            f"overlap: rule {ov['rule']}, trimmed {ov['trimmed']}; max |SMD| {_fmt(ov['max_abs_smd']['raw'], 3)} raw, "
            f"{_fmt(ov['max_abs_smd']['weighted'], 3)} weighted"
        )
    return lines


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        results = run(cfg, out_dir)
    except (DataError, ValueError) as err:
        # Bad data or config: the message names the file, column or key; a traceback would bury it.
        sys.exit(f"error: {err}")
    print("\n".join(summary_lines(results)))
    print(f"results: {out_dir / 'results.json'}")
    ate = results.get("ate") or {}
    return ate.get("estimate")


if __name__ == "__main__":
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    main()
