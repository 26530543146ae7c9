"""The Cinelli & Hazlett contour plot: the bias-adjusted estimate over a confounder's two partial R^2."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _contour_grid(
    result: Mapping[str, Any], lim_x: float | None, lim_y: float | None, n_grid: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Grid of (R^2_{D~Z|X}, R^2_{Y~Z|D,X}), the adjusted estimate on it, and the axis limits.

    The default limits reach past the robustness value and every benchmark bound so all of them show; 0.99 caps
    them because R^2_{D~Z|X} = 1 divides by zero.
    """
    est, se, dof = result["estimate"], result["stderr"], result["dof"]
    bounds = result.get("bounds", [])
    biggest = max([result["robustness_value"] * 1.5, 0.1] + [b["r2dz_x"] * 1.2 for b in bounds])
    lim_x = min(lim_x or biggest, 0.99)
    lim_y = min(lim_y or max([biggest] + [b["r2yz_dx"] * 1.2 for b in bounds]), 0.99)
    gx, gy = np.meshgrid(np.linspace(0, lim_x, n_grid), np.linspace(0, lim_y, n_grid))
    bias = se * np.sqrt(dof) * np.sqrt(gy * gx / (1 - gx))
    sign = np.sign(est) if est != 0 else 1.0
    adjusted = sign * (abs(est) - bias) if result.get("reduce", True) else sign * (abs(est) + bias)
    return gx, gy, adjusted, lim_x, lim_y


def _draw_contours(
    ax: Any,
    result: Mapping[str, Any],
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    lims: tuple[float, float],
    names: Any = None,
) -> None:
    """Contours of the adjusted estimate (red dashed at zero), the linear model's point and the benchmark bounds.

    A bound beyond an axis limit (R^2 capped at 1 lies past the 0.99 limit) is drawn on the edge as an open
    diamond, its label saying the true value, so every benchmark shows.
    """
    from causal.report import plot_label
    from causal.reporting.labels import DisplayNames

    names = names or DisplayNames()
    gx, gy, adjusted = grid

    contours = ax.contour(gx, gy, adjusted, levels=12, colors="grey", linewidths=0.8)
    ax.clabel(contours, fontsize=7)
    if adjusted.min() < 0 < adjusted.max():
        ax.contour(gx, gy, adjusted, levels=[0.0], colors="red", linestyles="--", linewidths=1.5)
    ax.plot(0, 0, marker="^", color="black")
    ax.annotate(
        f"linear model, no hidden factor ({result['estimate']:.3g})",
        (0, 0),
        textcoords="offset points",
        xytext=(5, 5),
        fontsize=8,
    )
    n_edge = 0
    for b in result.get("bounds", []):
        x, y = min(b["r2dz_x"], lims[0]), min(b["r2yz_dx"], lims[1])
        edge = x < b["r2dz_x"] or y < b["r2yz_dx"]
        ax.plot(x, y, marker="D", color="red", fillstyle="none" if edge else "full", clip_on=False)
        where = f"; beyond the axes at R² {b['r2dz_x']:.2f}, {b['r2yz_dx']:.2f}" if edge else ""
        n_edge += edge
        ax.annotate(
            plot_label(f"{b['kd']:g}x {names(b['benchmark'])} ({b['adjusted_estimate']:.3g}{where})"),
            (x, y),
            textcoords="offset points",
            xytext=(-6, -13 * n_edge) if edge else (5, 5),
            ha="right" if edge else "left",
            fontsize=8,
        )


def ovb_contour_plot(
    result: Mapping[str, Any],
    path: str | Path,
    *,
    lim_x: float | None = None,
    lim_y: float | None = None,
    n_grid: int = 101,
    dpi: int = 120,
    names: Any = None,
) -> Path:
    """Contour plot of the bias-adjusted estimate over a confounder's partial R^2 (Cinelli & Hazlett, Fig. 2).

    The x axis is R^2_{D~Z|X}, the y axis R^2_{Y~Z|D,X}; the red dashed contour is where the adjusted estimate is
    zero, and each benchmark bound from :func:`causal.sensitivity.ovb.ovb_robustness` is marked.

    Parameters
    ----------
    result : mapping
        Output of :func:`causal.sensitivity.ovb.ovb_robustness`.
    path : str or Path
        PNG file to write (parent folders are created).
    lim_x, lim_y : float, optional
        Axis upper limits (default: large enough for the benchmarks and the zero contour, at most 0.99).
    n_grid : int
        Grid points per axis.
    dpi : int
        Resolution of the PNG.
    names : callable, optional
        Column -> words (:class:`causal.reporting.labels.DisplayNames`, with the run's ``display_names``).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    # Figure + Agg canvas rather than pyplot: no global state, safe in worker threads and without a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from causal.report import plot_label

    gx, gy, adjusted, lim_x, lim_y = _contour_grid(result, lim_x, lim_y, n_grid)
    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    from causal.reporting.labels import DisplayNames

    names = names or DisplayNames()
    _draw_contours(ax, result, (gx, gy, adjusted), (lim_x, lim_y), names)
    ax.set_xlabel("partial R² of confounder with the treatment")
    ax.set_ylabel("partial R² of confounder with the outcome")
    title = f"Estimate of {names(result['treatment'])} left by a hidden factor (red dashed: zero)"
    ax.set_title(plot_label(title), fontsize=10)
    ax.set_xlim(0, lim_x)
    ax.set_ylim(0, lim_y)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
