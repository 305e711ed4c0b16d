"""One self-contained HTML report over run records (``decaf report``).

Why one file: a report is mailed, attached to a pull request or opened offline on a cluster
node, so every image is an inline data URI, CSS and JS are inline and nothing is fetched.
Sections: the runs; the leaderboard with bootstrap CIs (:mod:`decafbench.tables`); J&F
distributions; the per-expression paired difference against the baseline, sorted, with the
CI band of its mean (:mod:`decafbench.runstats`); how each fusion stage moves the attention
diagnostics; a per-expression table that sorts by any column and links each row to its
embedded :mod:`decafbench.show` figure. Large runs stay usable: figures are thumbnails and
exist only for the N worst and N best expressions of the first run unless all are asked.
Markup, inline CSS/JS and data URIs live in :mod:`decafbench.report_html`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .report_html import data_uri, esc, frame_html, page
from .show import STAGE_ORDER

DIAG_METRICS = ("iou", "hit", "mass")


@dataclass
class ReportOptions:
    """``figures``: N worst + N best expressions get a figure (``None``: all)."""

    figures: int | None = 5
    resamples: int = 10_000
    seed: int = 0
    confidence: float = 0.95
    metric: str = "JF"
    cache_dir: Path | None = None
    root: Path | None = None
    thumb_width: int = 160
    figure_dpi: int = 80
    trust_pickle: bool = False  # only ever from the command line (--trust-pickle), never from a record


@dataclass
class ReportResult:
    html: str
    n_expressions: int
    n_figures: int
    notes: list[str] = field(default_factory=list)


# -- numbers (tested against slow references) -----------------------------------------------------
def paired_differences(base: Any, rec: Any, metric: str = "JF") -> Any:
    """``rec - base`` per shared, scored expression, in points, sorted ascending (a pandas
    Series indexed by (video, exp_id); ties keep the (video, exp_id) order)."""
    a, b = base.scores(metric), rec.scores(metric)
    shared = a.index.intersection(b.index).sort_values()
    d = 100.0 * (b.loc[shared] - a.loc[shared])
    return d.sort_values(kind="stable")


def stage_diagnostics(rec: Any) -> Any:
    """Mean of each ``diag_<stage>_<metric>`` column over the non-failed expressions (NaN
    skipped): a DataFrame indexed by stage (fusion order), columns iou, hit, mass."""
    import pandas as pd

    t = rec.table
    if "error" in t:
        t = t[~t["error"].fillna("").astype(str).str.len().astype(bool)]
    stages = [c[5:-len(m) - 1] for c in t.columns for m in DIAG_METRICS if c.startswith("diag_") and c.endswith("_" + m)]
    stages = [s for s in STAGE_ORDER if s in stages] + sorted(set(stages) - set(STAGE_ORDER))
    data = {m: [float(pd.to_numeric(t[f"diag_{s}_{m}"], errors="coerce").mean()) if f"diag_{s}_{m}" in t else math.nan
                for s in stages] for m in DIAG_METRICS}
    return pd.DataFrame(data, index=pd.Index(stages, name="stage"))


def select_figures(rec: Any, n: int | None, metric: str = "JF") -> list[tuple[tuple[str, str], str]]:
    """Expressions to draw: the ``n`` worst then ``n`` best by ``metric`` (ties by key), each
    with a tag; ``None``: every row of the table. Unscored rows fill in when nothing is scored."""
    keys = [(str(v), str(e)) for v, e in zip(rec.table["video"], rec.table["exp_id"])]
    if n is None:
        return [(k, "") for k in sorted(keys)]
    if n <= 0:
        return []
    s = rec.scores(metric) if metric in rec.table else None
    if s is None or s.empty:
        return [(k, "") for k in sorted(keys)[: 2 * n]]
    ranked = sorted(((float(v), (str(k[0]), str(k[1]))) for k, v in s.items()), key=lambda x: (x[0], x[1]))
    worst = [(k, f"worst #{i + 1}") for i, (_, k) in enumerate(ranked[:n])]
    chosen = {k for k, _ in worst}
    best = [(k, f"best #{i + 1}") for i, (_, k) in enumerate(reversed(ranked)) if k not in chosen][:n]
    return worst + best


def anchor(video: str, exp_id: str) -> str:
    """A stable HTML id for an expression's figure, safe whatever the ids contain."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{video}-{exp_id}")[:60]
    digest = hashlib.sha1("\0".join((video, exp_id)).encode()).hexdigest()[:8]
    return f"fig-{safe}-{digest}"


def expression_table(records: Sequence[Any], labels: Sequence[str], baseline: int | None = None) -> Any:
    """One row per expression of any run (sorted by video, exp_id). Columns: keys, the first
    run's object word, J, F, J&F (points) and fused-map diagnostics, each other run's J&F, the
    first run's J&F minus the baseline's, the first run's error."""
    import pandas as pd

    keys = sorted({(str(v), str(e)) for r in records for v, e in zip(r.table["video"], r.table["exp_id"])})
    idx = pd.MultiIndex.from_tuples(keys, names=["video", "exp_id"]) if keys else \
        pd.MultiIndex.from_tuples([], names=["video", "exp_id"])
    first = records[0].table.assign(video=lambda t: t["video"].astype(str), exp_id=lambda t: t["exp_id"].astype(str))
    first = first.drop_duplicates(["video", "exp_id"]).set_index(["video", "exp_id"]).reindex(idx)
    out = pd.DataFrame(index=idx)
    if "split" in first and first["split"].fillna("").astype(str).str.len().any():
        out["split"] = first["split"].fillna("")
    if "obj_name" in first:
        out["object word"] = first["obj_name"].fillna("")
    for col, label in (("J", "J"), ("F", "F"), ("JF", "J&F")):
        if col in first:
            out[label] = 100.0 * pd.to_numeric(first[col], errors="coerce")
    for i, (rec, lab) in enumerate(zip(records, labels)):
        if i and "JF" in rec.table:
            out[f"J&F {lab}"] = 100.0 * rec.scores("JF", drop_failed=False).reindex(idx)
    if baseline is not None and baseline != 0 and "JF" in first and "JF" in records[baseline].table:
        out[f"\u0394 J&F vs {labels[baseline]}"] = out["J&F"] - 100.0 * records[baseline].scores("JF").reindex(idx)
    for m in DIAG_METRICS:
        if f"diag_fused_{m}" in first:
            out[f"fused {m}"] = pd.to_numeric(first[f"diag_fused_{m}"], errors="coerce")
    if "error" in first:
        out["error"] = first["error"].fillna("").astype(str)
    return out.reset_index()


# -- plots -----------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _short(label: str, n: int = 40) -> str:
    return label if len(label) <= n else "\u2026" + label[-(n - 1):]


def distribution_plot(records: Sequence[Any], labels: Sequence[str]) -> str | None:
    """Box plots and histograms of per-expression J&F (points), one per run."""
    data = [100.0 * r.scores("JF").to_numpy() for r in records if "JF" in r.table]
    names = [_short(lab) for r, lab in zip(records, labels) if "JF" in r.table]
    if not data or not any(len(d) for d in data):
        return None
    fig = _figure(10, 1.2 + 0.45 * len(data))
    ax_box, ax_hist = fig.subplots(1, 2, width_ratios=[1, 1.3])
    ax_box.boxplot([d if len(d) else [np.nan] for d in data], orientation="horizontal", tick_labels=names,
                   showmeans=True)
    ax_box.invert_yaxis()
    ax_box.set_xlabel("J&F per expression (points)")
    bins = np.linspace(0, 100, 21)
    for d, name in zip(data, names):
        ax_hist.hist(d, bins=bins, histtype="step", linewidth=1.5, label=name)
    ax_hist.set_xlabel("J&F (points)")
    ax_hist.set_ylabel("expressions")
    ax_hist.legend(fontsize=7)
    return data_uri(fig)


def paired_plot(diffs: Sequence[tuple[str, Any, float, float, float]], base_label: str) -> str:
    """Per run: sorted per-expression differences, the mean and its CI band (points)."""
    fig = _figure(10, 0.6 + 2.1 * len(diffs))
    axes = np.atleast_1d(fig.subplots(len(diffs), 1, squeeze=False)[:, 0])
    for ax, (label, d, mean, lo, hi) in zip(axes, diffs):
        x = np.arange(len(d))
        ax.bar(x, d.to_numpy(), width=1.0, color=np.where(d.to_numpy() >= 0, "#2a9d8f", "#e76f51"))
        ax.axhspan(lo, hi, color="#264653", alpha=0.18, label=f"CI of the mean [{lo:+.2f}, {hi:+.2f}]")
        ax.axhline(mean, color="#264653", linewidth=1.2, label=f"mean {mean:+.2f}")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_title(f"{_short(label, 60)} \u2212 {_short(base_label, 40)}", fontsize=9)
        ax.set_ylabel("\u0394 J&F (points)")
        ax.set_xlim(-0.5, max(len(d), 1) - 0.5)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("expressions, sorted by difference")
    return data_uri(fig)


def diagnostics_plot(diags: Sequence[tuple[str, Any]]) -> str:
    """Mean diagnostic per fusion stage, one line per run and one panel per metric."""
    fig = _figure(10, 3.4)
    axes = fig.subplots(1, len(DIAG_METRICS))
    for ax, m in zip(axes, DIAG_METRICS):
        for label, df in diags:
            ax.plot(range(len(df)), df[m].to_numpy(), marker="o", label=_short(label, 30))
            ax.set_xticks(range(len(df)), [s.replace("_", " ") for s in df.index], fontsize=7, rotation=40,
                          ha="right", rotation_mode="anchor")
        ax.set_title(m, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=6)
    return data_uri(fig)


# -- the report ------------------------------------------------------------------------------------
def _load_records(runs: Sequence[str | Path], baseline: str | Path | None) -> tuple[list[Any], int | None]:
    """Records in order (the baseline appended when it is not among ``runs``) and its index;
    without a baseline the first run is the baseline when there are several."""
    from .runstore import read_record

    if not runs:
        raise InputError("report needs at least one run record")
    paths = [Path(p) for p in runs]
    base_idx: int | None = None
    if baseline is not None:
        resolved = [p.resolve() for p in paths]
        if Path(baseline).resolve() in resolved:
            base_idx = resolved.index(Path(baseline).resolve())
        else:
            paths.append(Path(baseline))
            base_idx = len(paths) - 1
    elif len(paths) > 1:
        base_idx = 0
    return [read_record(p) for p in paths], base_idx


def _runs_section(records: Sequence[Any], labels: Sequence[str], base_idx: int | None) -> str:
    import pandas as pd

    from .tables import manifest_value

    rows = []
    for i, (r, lab) in enumerate(zip(records, labels)):
        role = ("figures" if i == 0 else "") + (" baseline" if i == base_idx else "")
        rows.append({"run": lab, "role": role.strip(), "path": str(r.path),
                     **{k: manifest_value(r.manifest, k) for k in ("benchmark", "split", "adapter", "checkpoint",
                                                                   "variant_label", "mask_kind")},
                     "expressions": int(len(r.table)),
                     "failed": int(r.table["error"].fillna("").astype(str).str.len().astype(bool).sum())})
    return frame_html(pd.DataFrame(rows), "runs-table", sortable=False)


def _figures(rec: Any, picks: Sequence[tuple[tuple[str, str], str]], opts: ReportOptions,
             texts: dict, bench: Any, notes: list[str]) -> tuple[str, dict[tuple[str, str], str]]:
    """Embedded ``show`` figures (JPEG thumbnails) and the anchor of each expression drawn."""
    from .show_record import load_expression_view

    blocks, anchors = [], {}
    for (video, exp_id), tag in picks:
        aid = anchor(video, exp_id)
        anchors[(video, exp_id)] = aid
        head = f"{tag + ': ' if tag else ''}{video} / {exp_id}: \u201c{texts.get((video, exp_id), '')}\u201d"
        try:
            view = load_expression_view(rec.path, video, exp_id, cache_dir=opts.cache_dir, root=opts.root,
                                        record=rec, benchmark=bench)
            fig = view.figure(thumb_width=opts.thumb_width, dpi=opts.figure_dpi)
            img = (f'<img class="thumb" alt="attention overlays of {esc(video)} / {esc(exp_id)}" '
                   f'src="{data_uri(fig, "jpeg")}">')
            extra = "".join(f'<br><span class="note">{esc(n)}</span>' for n in view.notes)
        except Exception as exc:  # noqa: BLE001 - one missing figure must not sink the report
            img, extra = "", f'<br><span class="err">figure unavailable: {esc(" ".join(str(exc).split()))}</span>'
            notes.append(f"figure {video}/{exp_id}: {' '.join(str(exc).split())}")
        blocks.append(f'<figure id="{aid}">{img}<figcaption>{esc(head)}{extra} '
                      f'<a href="#expressions">back to the table</a></figcaption></figure>')
    return '<div class="figs">' + "\n".join(blocks) + "</div>", anchors


def build_report(runs: Sequence[str | Path], *, baseline: str | Path | None = None,
                 options: ReportOptions | None = None) -> ReportResult:
    """The report as an HTML string; ``runs[0]`` is the run whose figures are drawn."""
    from . import runstats, tables

    opts = options or ReportOptions()
    records, base_idx = _load_records(runs, baseline)
    labels = runstats.unique_labels(records)
    notes: list[str] = []
    sections = [("runs", "Runs", _runs_section(records, labels, base_idx))]
    pct = round(100 * opts.confidence)
    scored = [r for r in records if opts.metric in r.table and len(r.scores(opts.metric))]
    if scored:
        board = tables.build_leaderboard(scored, resamples=opts.resamples, seed=opts.seed, confidence=opts.confidence)
        sections.append(("leaderboard", "Leaderboard", tables.to_html(board)))
        uri = distribution_plot(records, labels)
        if uri:
            sections.append(("distribution", "J&F distribution per run", f'<img class="plot" alt="J&amp;F distributions" src="{uri}">'))
    else:
        notes.append("no run has scores (no ground truth): leaderboard and plots skipped.")
    if base_idx is not None and len(records) > 1 and len(scored) == len(records):
        others = [i for i in range(len(records)) if i != base_idx]
        aligned = runstats.align_runs([records[base_idx]] + [records[i] for i in others], opts.metric)
        _, cmp = runstats.analyse_runs(aligned, baseline=0, resamples=opts.resamples, seed=opts.seed,
                                       confidence=opts.confidence)
        diffs = []
        for i, row in zip(others, cmp.itertuples()):
            d = paired_differences(records[base_idx], records[i], opts.metric)
            diffs.append((labels[i], d, row.diff, row.ci_low, row.ci_high))
        shown = cmp.rename(columns={"ci_low": f"{pct}% CI low", "ci_high": f"{pct}% CI high", "diff": "diff (points)"})
        body = (f'<p class="note">Paired over the {len(aligned.keys)} expressions every run scored; diff = run_b '
                f'\u2212 run_a (points), percentile bootstrap CI ({opts.resamples} resamples, seed {opts.seed}), '
                f'p-values two-sided, Holm over the permutation p-values.</p>'
                + frame_html(shown, "paired-table", digits={"n": 0}, sortable=False)
                + f'<img class="plot" alt="paired differences" src="{paired_plot(diffs, labels[base_idx])}">')
        sections.append(("paired", f"Paired difference against {labels[base_idx]}", body))
    diags = [(lab, stage_diagnostics(r)) for r, lab in zip(records, labels)]
    diags = [(lab, df) for lab, df in diags if len(df)]
    if diags:
        import pandas as pd

        wide = pd.concat({_short(lab, 30): df for lab, df in diags}, axis=1)
        wide.columns = [f"{m} {lab}" if len(diags) > 1 else m for lab, m in wide.columns]
        body = ('<p class="note">Mean over expressions of each stage\'s diagnostics against the key frames\' ground '
                'truth: iou = IoU of the stage\'s Otsu mask, hit = pointing game, mass = share of attention inside '
                'the target. Read left to right: how each fusion step moves the object signal.</p>'
                + frame_html(wide.reset_index(), "diagnostics-table", sortable=False)
                + f'<img class="plot" alt="diagnostics per stage" src="{diagnostics_plot(diags)}">')
        sections.append(("diagnostics", "Diagnostics per fusion stage", body))
    bench, texts = None, {}
    try:
        from decafbench.benchmarks.registry import get_benchmark

        m = records[0].manifest
        # trust (reading a pickle runs code) comes only from the person running the report, never
        # from a record, which may have been sent by anyone
        bench = get_benchmark(str(m.get("benchmark")), root=opts.root or m.get("root"), split=m.get("split"),
                              trust_pickle=opts.trust_pickle)
        texts = {(e.video, str(e.exp_id)): e.text for e in bench.expressions()}
    except InputError as exc:
        notes.append(f"benchmark of {labels[0]} not readable ({exc}); no expression texts or figures.")
    picks = select_figures(records[0], opts.figures, opts.metric) if bench is not None else []
    figs_html, anchors = _figures(records[0], picks, opts, texts, bench, notes)
    table = expression_table(records, labels, base_idx)
    if texts:
        table.insert(2, "expression", [texts.get((v, e), "") for v, e in zip(table["video"], table["exp_id"])])
    links = [f'<td data-v="1"><a href="#{anchors[k]}">figure</a></td>' if k in anchors else '<td data-v="">\u2013</td>'
             for k in zip(table["video"], table["exp_id"])]
    digits = {c: (1 if c in ("J", "F", "J&F") or c.startswith(("J&F ", "\u0394")) else 2) for c in table.columns}
    body = (f'<p class="note">{len(table)} expressions; J, F, J&amp;F in points of the first run. Click a column '
            'header to sort.</p><div class="scroll">'
            + frame_html(table, "expr-table", digits=digits, extra={"figure": links}) + "</div>")
    sections.append(("expressions", "Per-expression results", body))
    which = "every expression" if opts.figures is None else f"the {opts.figures} worst and best expressions by J&F"
    sections.append(("figures", f"Attention overlays of {labels[0]}",
                     f'<p class="note">Figures for {which}; click one to enlarge.</p>' + figs_html))
    title = "decafbench report: " + ", ".join(_short(lab, 40) for lab in labels[:3]) + (" \u2026" if len(labels) > 3 else "")
    return ReportResult(page(title, sections), len(table), len(anchors), notes)


def write_report(runs: Sequence[str | Path], out: str | Path, *, baseline: str | Path | None = None,
                 options: ReportOptions | None = None) -> ReportResult:
    """:func:`build_report` written atomically to ``out``."""
    from .runstore import atomic_write_text

    result = build_report(runs, baseline=baseline, options=options)
    atomic_write_text(out, result.html)
    return result
