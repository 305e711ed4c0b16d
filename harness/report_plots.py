"""The plots of ``decaf report``: matplotlib figures on an Agg canvas, returned as data URIs.

Why apart from :mod:`decafbench.report`: that module decides what the report says; this one
only draws. Every axis is labelled and scaled to the data (a J&F that lives between 1 and 6
points is drawn between 1 and 6, not flat at the bottom of 0-100), bins follow the data, and
runs are named by their short id (``R1``...) plus the part of their label that differs, so
long labels never crowd a plot. Each function returns a matplotlib ``Figure`` (Agg canvas, no
pyplot state, no display); :func:`axes_labels` lists what its axes say, which the report
writes beside the image so a browser test can check every plot is labelled.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

DIAG_METRICS = ("iou", "hit", "mass")
DIAG_AXIS = {"iou": "IoU of the stage's Otsu mask", "hit": "pointing-game hit rate",
             "mass": "attention mass inside the target"}


def figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def axes_labels(fig: Any) -> list[tuple[str, str]]:
    """``(x label, y label)`` of every visible axes of ``fig`` (legend-only or switched-off
    axes left out)."""
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.axison and ax.get_label() != "colorbar"]


def shorten(label: str, n: int = 40) -> str:
    """``label`` cut at the start to ``n`` characters (the end of a run label is what differs)."""
    return label if len(label) <= n else "\u2026" + label[-(n - 1):]


def histogram_bins(values: Sequence[np.ndarray], lo_bins: int = 5, hi_bins: int = 40) -> np.ndarray:
    """Shared bin edges for every run: numpy's ``auto`` rule on the pooled values, clamped to
    ``lo_bins..hi_bins`` bins, over the data's range (a constant sample gets a unit-wide bin)."""
    pooled = np.concatenate([np.asarray(v, float) for v in values]) if values else np.array([])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return np.linspace(0.0, 1.0, lo_bins + 1)
    lo, hi = float(pooled.min()), float(pooled.max())
    if hi - lo < 1e-9:
        return np.array([lo - 0.5, hi + 0.5])
    n = len(np.histogram_bin_edges(pooled, bins="auto")) - 1
    return np.linspace(lo, hi, int(np.clip(n, lo_bins, hi_bins)) + 1)


def distribution_plot(data: Sequence[np.ndarray], names: Sequence[str], max_histograms: int = 4) -> Any:
    """Per-expression J&F per run: box plots (median, mean marker, legend) with every
    expression as a dot, and, for up to ``max_histograms`` runs, step histograms on shared,
    data-driven bins (more overlaid histograms are unreadable; the dots carry the shape)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    if not data or not any(len(d) for d in data):
        return None
    hist = len(data) <= max_histograms
    fig = figure(11, 1.9 + 0.42 * len(data))
    if hist:
        ax_box, ax_hist = fig.subplots(1, 2, width_ratios=[1.25, 1])
    else:
        ax_box, ax_hist = fig.subplots(1, 1), None
    ax_box.boxplot([d if len(d) else [np.nan] for d in data], orientation="horizontal", tick_labels=list(names),
                   showmeans=True, showfliers=False, widths=0.55,
                   meanprops={"marker": "^", "markerfacecolor": "#2a9d8f", "markeredgecolor": "black"},
                   medianprops={"color": "#e76f51", "linewidth": 1.6})
    rng = np.random.default_rng(0)  # jitter only: fixed, so the same records give the same picture
    for i, d in enumerate(data):
        ax_box.scatter(d, i + 1 + rng.uniform(-0.18, 0.18, len(d)), s=9, color="#264653", alpha=0.45, linewidths=0)
    ax_box.invert_yaxis()
    ax_box.set_xlabel("J&F per expression (points)")
    ax_box.set_ylabel("run")
    ax_box.grid(axis="x", alpha=0.3)
    ax_box.legend(handles=[Line2D([], [], color="#e76f51", linewidth=1.6, label="median"),
                           Line2D([], [], marker="^", linestyle="none", markerfacecolor="#2a9d8f",
                                  markeredgecolor="black", label="mean"),
                           Line2D([], [], marker="o", linestyle="none", color="#264653", alpha=0.45, markersize=4,
                                  label="one expression"),
                           Line2D([], [], color="black", linewidth=1, label="box: quartiles; whiskers: 1.5 IQR")],
                  fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0) if not hist else None, framealpha=0.9)
    if ax_hist is not None:
        bins = histogram_bins(data)
        for d, name in zip(data, names):
            ax_hist.hist(d, bins=bins, histtype="step", linewidth=1.5, label=name.split(" ", 1)[0])
        ax_hist.set_xlabel(f"J&F (points; {len(bins) - 1} bins of {bins[1] - bins[0]:.2g})")
        ax_hist.set_ylabel("expressions")
        ax_hist.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_hist.legend(fontsize=8)
    return fig


def paired_plot(diffs: Sequence[tuple[str, Any, float, float, float]], base_label: str) -> Any:
    """Per run: sorted per-expression differences, the mean and its CI band (points)."""
    fig = figure(11, 0.6 + 2.1 * len(diffs))
    axes = np.atleast_1d(fig.subplots(len(diffs), 1, squeeze=False)[:, 0])
    for ax, (label, d, mean, lo, hi) in zip(axes, diffs):
        x = np.arange(len(d))
        ax.bar(x, d.to_numpy(), width=1.0, color=np.where(d.to_numpy() >= 0, "#2a9d8f", "#e76f51"))
        ax.axhspan(lo, hi, color="#264653", alpha=0.18, label=f"CI of the mean [{lo:+.2f}, {hi:+.2f}]")
        ax.axhline(mean, color="#264653", linewidth=1.2, label=f"mean {mean:+.2f}")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_title(f"{shorten(label, 70)} \u2212 {shorten(base_label, 50)}", fontsize=10)
        ax.set_ylabel("\u0394 J&F (points)")
        ax.set_xlim(-0.5, max(len(d), 1) - 0.5)
        ax.legend(fontsize=8, loc="upper left")
        ax.set_xlabel("expressions, sorted by difference")
    return fig


def diagnostics_plot(diags: Sequence[tuple[str, Any]], stage_names: dict[str, str]) -> Any:
    """Mean diagnostic per fusion stage, one line per run and one panel per metric; the y axis
    follows the data (with a margin), the legend sits below the panels."""
    fig = figure(11, 3.9 + 0.22 * ((len(diags) + 2) // 3))
    axes = fig.subplots(1, len(DIAG_METRICS))
    for ax, m in zip(axes, DIAG_METRICS):
        for label, df in diags:
            ax.plot(range(len(df)), df[m].to_numpy(), marker="o", label=label)
        stages = list(diags[0][1].index)
        ax.set_xticks(range(len(stages)), [stage_names.get(s, s) for s in stages], fontsize=8, rotation=35,
                      ha="right", rotation_mode="anchor")
        ax.set_title(m, fontsize=10)
        ax.set_ylabel(f"mean {DIAG_AXIS[m]}", fontsize=9)
        ax.set_xlabel("fusion stage", fontsize=9)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8)
    return fig


def sweep_plot(panels: Sequence[tuple[str, str, list[tuple[str, list, list[float], list[float], list[float]]]]]) -> Any:
    """J&F (mean, CI error bars) against a swept parameter: one panel per (parameter, mask
    kind), one line per series (the other settings held fixed). ``panels``: (parameter, mask
    kind, [(series label, x values, means, CI lows, CI highs)])."""
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig = figure(11, 0.4 + 3.3 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (param, kind, series) in zip(axes, panels):
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for _, xs, *_ in series for x in xs)
        cats = sorted({str(x) for _, xs, *_ in series for x in xs})
        for label, xs, means, los, his in series:
            pos = np.asarray(xs, float) if numeric else np.array([cats.index(str(x)) for x in xs], float)
            order = np.argsort(pos)
            m, lo, hi = (np.asarray(v, float)[order] for v in (means, los, his))
            ax.errorbar(pos[order], m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=label)
        if not numeric:
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(param)
        ax.set_ylabel("J&F (points), mean and CI")
        ax.set_title(f"{param} \u2014 {kind} masks", fontsize=10)
        ax.margins(y=0.15)
        ax.grid(alpha=0.3)
        if len(series) > 1 or series[0][0]:
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    return fig
