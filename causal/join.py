"""Joining the annotation images table with an engagement table on ``image_id``, counting the rows lost and why."""

from __future__ import annotations

import logging

import pandas as pd

from causal.tables import DataError, check_unique_ids

log = logging.getLogger(__name__)


def _check_join_inputs(
    images: pd.DataFrame, engagement: pd.DataFrame, images_source: str, engagement_source: str, id_column: str
) -> None:
    """Raise :class:`DataError` on a missing or duplicated id column, or a column other than the id in both."""
    for frame, source in ((images, images_source), (engagement, engagement_source)):
        if id_column not in frame.columns:
            raise DataError(f"{source}: missing id column {id_column!r}")
        check_unique_ids(frame, id_column, source)
    overlap = sorted((set(images.columns) & set(engagement.columns)) - {id_column})
    if overlap:
        raise DataError(
            f"{engagement_source} and {images_source}: column(s) {overlap} are in both tables; "
            "drop or rename them in one"
        )


def _ok_images(img: pd.DataFrame, id_column: str) -> tuple[pd.DataFrame, set[str]]:
    """The images without ``status == "error"``, and the ids of those with it."""
    if "status" not in img.columns:
        return img, set()
    bad = img["status"].astype(str).str.lower().eq("error")
    return img.loc[~bad], set(img.loc[bad, id_column])


def _check_loss(report: dict, why: str, *, sources: tuple[str, str], id_column: str, max_lost_fraction: float | None):
    """Raise :class:`DataError` when the join kept no row or lost more than ``max_lost_fraction`` of them."""
    engagement_source, images_source = sources
    lost = report["missing_in_annotations"] + report["error_status"]
    if max_lost_fraction is not None and lost / max(report["engagement_rows"], 1) > max_lost_fraction:
        raise DataError(
            f"joining {engagement_source} with {images_source} on {id_column!r} lost {lost} of "
            f"{report['engagement_rows']} engagement rows (more than max_lost_fraction={max_lost_fraction}): {why}"
        )
    if lost or report["missing_in_engagement"]:
        log.warning("join on %r kept %d rows: %s", id_column, report["joined_rows"], why)
    else:
        log.info("join on %r kept all %d rows", id_column, report["joined_rows"])


def join_annotations(
    images: pd.DataFrame,
    engagement: pd.DataFrame,
    *,
    images_source: str = "annotations",
    engagement_source: str = "engagement",
    id_column: str = "image_id",
    max_lost_fraction: float | None = None,
) -> pd.DataFrame:
    """Inner-join the annotation images table with an engagement table on ``id_column``.

    Images with ``status == "error"`` are dropped first. Rows lost by the join are counted by reason and logged:
    engagement rows whose id is missing in the annotations, engagement rows whose image has error status, and
    annotated images missing in the engagement table. The counts are also in ``result.attrs["join"]``.

    Parameters
    ----------
    images : DataFrame
        The ``annotations/images`` table (one row per image).
    engagement : DataFrame
        One row per artwork with engagement columns. Its columns must not repeat image columns other than the id.
    images_source, engagement_source : str
        File names for messages.
    id_column : str
        The join key; compared as strings so ``"7"`` and ``7`` match.
    max_lost_fraction : float or None
        Raise when more than this fraction of engagement rows is lost. ``None``: raise only when all are lost.

    Returns
    -------
    DataFrame
        Engagement columns followed by image columns, in engagement row order, index ``0..n-1``.

    Raises
    ------
    DataError
        On a missing or duplicated id column, overlapping column names, or when the join loses all rows (or more
        than ``max_lost_fraction`` of them). The message says how many were lost and why.
    """
    _check_join_inputs(images, engagement, images_source, engagement_source, id_column)
    img = images.copy()
    eng = engagement.copy()
    img[id_column] = img[id_column].astype(str)
    eng[id_column] = eng[id_column].astype(str)
    img, error_ids = _ok_images(img, id_column)
    eng_ids = eng[id_column]
    in_error = eng_ids.isin(error_ids)
    not_annotated = ~eng_ids.isin(set(img[id_column])) & ~in_error
    not_engaged = ~img[id_column].isin(set(eng_ids))
    joined = eng.merge(img, on=id_column, how="inner", validate="one_to_one", sort=False)
    report = {
        "engagement_rows": len(eng),
        "image_rows": len(images),
        "joined_rows": len(joined),
        "missing_in_annotations": int(not_annotated.sum()),
        "error_status": int(in_error.sum()),
        "missing_in_engagement": int(not_engaged.sum()),
    }
    why = (
        f"{report['missing_in_annotations']} engagement row(s) have no image in {images_source}, "
        f"{report['error_status']} have an image with status=error, "
        f"{report['missing_in_engagement']} annotated image(s) have no row in {engagement_source}"
    )
    if len(joined) == 0:
        raise DataError(
            f"joining {engagement_source} with {images_source} on {id_column!r} lost every row: {why}. "
            f"Example ids: engagement {list(eng_ids.head(3))}, annotations {list(img[id_column].head(3))}"
        )
    sources = (engagement_source, images_source)
    _check_loss(report, why, sources=sources, id_column=id_column, max_lost_fraction=max_lost_fraction)
    joined = joined.reset_index(drop=True)
    joined.attrs["join"] = report
    return joined
