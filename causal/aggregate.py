"""A sweep's runs -> one table: each run's overrides beside its headline results.

A Hydra multirun folder holds one subfolder per job with ``results.json`` and ``.hydra/overrides.yaml``;
:func:`collect_runs` reads every such pair under the folder (any depth) into one row per run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """Hydra override strings (``key=value``, ``+key=value``, ``~key``) -> ``{key: value}`` (values as written)."""
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = str(line).partition("=")
        key = key.lstrip("+~")
        out[key] = value if sep else "(deleted)"
    return out


def _effect(row: dict[str, Any], prefix: str, effect: Mapping[str, Any] | None) -> None:
    if effect:
        for k in ("estimate", "stderr", "ci_low", "ci_high"):
            if k in effect:
                row[f"{prefix}_{k}" if k != "estimate" else prefix] = effect[k]


def result_row(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of one ``results.json`` as a flat row."""
    row: dict[str, Any] = {
        "treatment": results.get("treatment"),
        "outcome": results.get("outcome"),
        "n_units": results.get("n_units"),
        "n_used": results.get("n_used"),
    }
    if results.get("naive"):
        row["naive"] = results["naive"].get("difference_in_means")
    _effect(row, "ate", results.get("ate"))
    truth = results.get("truth") or {}
    true_ate = truth.get("ate_used", truth.get("ate"))
    if true_ate is not None and results.get("ate"):
        row["true_ate"] = true_ate
        row["ci_covers_truth"] = bool(results["ate"]["ci_low"] <= true_ate <= results["ate"]["ci_high"])
    med = results.get("mediation")
    if med:
        _effect(row, "indirect", med.get("indirect"))
        row["mediation_verdict"] = med.get("verdict")
    sens = results.get("sensitivity") or {}
    if sens.get("e_value") is not None:
        row["e_value"] = sens["e_value"]
    return row


def collect_runs(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run under ``sweep_dir``: ``run`` (relative folder), each override as a column, then results.

    Raises
    ------
    FileNotFoundError
        When ``sweep_dir`` is not a folder or holds no ``results.json``.
    """
    import yaml

    root = Path(sweep_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep folder {root} does not exist")
    rows = []
    for path in sorted(root.rglob("results.json"), key=lambda p: [int(s) if s.isdigit() else s for s in p.parts]):
        run_dir = path.parent
        overrides_file = run_dir / ".hydra" / "overrides.yaml"
        overrides = (
            parse_overrides(yaml.safe_load(overrides_file.read_text()) or []) if overrides_file.is_file() else {}
        )
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            log.warning("%s: unreadable (%s); skipped", path, err)
            continue
        rows.append({"run": run_dir.relative_to(root).as_posix() or ".", **overrides, **result_row(results)})
    if not rows:
        raise FileNotFoundError(f"no results.json under {root}")
    return pd.DataFrame(rows)
