"""HTML building blocks of the report: number formatting, tables, verdict spans, PNG data URIs, the page's CSS."""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from causal.reporting.numbers import sig

log = logging.getLogger(__name__)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Most rows of a per-level table in the page: a column with thousands of levels once made a 16 MB report.
MAX_TABLE_ROWS = 30

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.summary{background:#f4f8fb;border-left:4px solid #1f78b4;padding:.8em 1.1em;font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}.muted{color:#666;font-size:.9em}
.ok{color:#1a7f37;font-weight:600}.bad{color:#b42318;font-weight:600}pre{background:#f6f6f6;padding:.8em;
overflow-x:auto;font-size:.8em}
.verdict{padding:.7em 1.1em;margin:.8em 0;border-left:6px solid;font-size:1.05em}
.verdict.fragile{background:#fdf0ef;border-color:#b42318}.verdict.robust{background:#eef8f0;border-color:#1a7f37}
.verdict.noeffect{background:#f6f6f6;border-color:#888}
.gallery{display:flex;flex-wrap:wrap;gap:.6em}.gallery figure{margin:0;width:180px;font-size:.8em}
.gallery img.thumb{border:1px solid #ccc;max-width:180px}.gallery figcaption{overflow-wrap:anywhere}
"""


# ------------------------------------------------------------------------------------------------------ formatting
def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "–"
        return sig(value, digits) if isinstance(value, float) else str(value)
    return html.escape(str(value))


def ci(effect: Mapping[str, Any] | None, digits: int = 4) -> str:
    if not effect or effect.get("ci_low") is None:
        return "–"
    return f"[{num(effect['ci_low'], digits)}, {num(effect['ci_high'], digits)}]"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value, is_num in zip(row, numeric):
            text = num(value) if is_num else (value if isinstance(value, Raw) else html.escape(str(value)))
            cells.append(f'<td class="num">{text}</td>' if is_num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw(str):
    """Trusted HTML inside a table cell (built here from escaped parts)."""


def verdict_span(passed: bool | None) -> Raw:
    if passed is None:
        return Raw('<span class="muted">not checked</span>')
    return Raw('<span class="ok">passed</span>' if passed else '<span class="bad">failed</span>')


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI; raises ``ValueError`` when the bytes are not a PNG."""
    if not png.startswith(_PNG_MAGIC):
        raise ValueError("not a PNG (bad signature)")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{html.escape(alt)}" src="{png_data_uri(png)}">'


def file_png(path: Path | None) -> bytes | None:
    if path is None or not path.is_file():
        return None
    data = path.read_bytes()
    if not data.startswith(_PNG_MAGIC):
        log.warning("%s is not a PNG; left out of the report", path)
        return None
    return data


def figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
