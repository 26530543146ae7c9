"""Your own engagement table in one line: ``engagement=engagement.csv`` joins it to the annotations of ``input=``.

    python scripts/run_experiment.py experiment=face_presence input=my_posters engagement=engagement.csv

:func:`use_engagement` replaces the ``data`` node by the table reader (conf/data/table.yaml) with ``path`` the
engagement file and ``images`` the run's annotation folder (``paths.annotations``, set by the annotate step), joined
on ``image_id`` (:mod:`causal.join`, whose error names the ids that do not match). :func:`check_engagement` is the
key's validation (called by :func:`causal.validate.validate_config`): the file exists, is CSV/TSV/Parquet (or a
folder of parts), has an ``image_id`` column, and there is an artwork folder to join it with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

JOIN_KEY = "image_id"
_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def _table_defaults() -> dict[str, Any]:
    from causal.validate import CONF_DIR

    path = CONF_DIR / "data" / "table.yaml"
    if not path.is_file():  # installed wheel: the configs are the package creative_insights_conf
        from importlib import resources

        path = Path(str(resources.files("creative_insights_conf") / "data" / "table.yaml"))
    return OmegaConf.to_container(OmegaConf.load(path))  # type: ignore[return-value]


def _header(path: Path) -> list[str]:
    """Column names of a CSV/TSV/Parquet file or of the first part in a folder, without reading the rows."""
    if path.is_dir():
        parts = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
        if not parts:
            return []
        path = parts[0]
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    import pandas as pd

    return list(pd.read_csv(path, nrows=0, sep="\t" if path.suffix.lower() == ".tsv" else ",").columns)


def check_engagement(plain: Any) -> list[tuple[str, str]]:
    """Problems with the ``engagement`` key as (key, message) pairs; empty when it is unset or fine."""
    value = plain.get("engagement") if hasattr(plain, "get") else None
    if value in (None, ""):
        return []
    path = Path(str(value))
    if not path.exists():
        return [("engagement", f"{path}: no such file or folder (your engagement table, joined on {JOIN_KEY})")]
    if path.is_file() and path.suffix.lower() not in _SUFFIXES:
        return [("engagement", f"{path}: expected a CSV, TSV or Parquet file, got {path.suffix or 'no extension'}")]
    paths = plain.get("paths") or {}
    if not plain.get("input") and not paths.get("annotations"):
        return [("engagement", "needs the artwork to join with: input=<artwork folder> or paths.annotations=<folder>")]
    try:
        columns = _header(path)
    except Exception as err:  # unreadable header: say so now, not after the annotation
        return [("engagement", f"{path}: cannot read its header ({err})")]
    if JOIN_KEY not in columns:
        return [("engagement", f"{path}: no {JOIN_KEY!r} column to join on (columns: {', '.join(columns[:12])})")]
    return []


def use_engagement(cfg: DictConfig) -> bool:
    """Point ``cfg.data`` at the engagement table joined with the run's annotations; False when ``engagement`` is
    unset (the config is left as it was)."""
    value = OmegaConf.select(cfg, "engagement", default=None)
    if not value:
        return False
    node = _table_defaults()
    node.update(path=str(value), images="${paths.annotations}", id_column=JOIN_KEY)
    with open_dict(cfg):
        cfg.data = OmegaConf.create(node)
    return True
