"""One self-contained HTML report over run records (``decaf report``).

Why one file: a report is mailed, attached to a pull request or opened offline on a cluster
node, so every image is an inline data URI, CSS and JS are inline and nothing is fetched.
Sections: the runs (each with a short id, ``R1``...); the leaderboard with bootstrap CIs
(:mod:`decafbench.tables`); J&F distributions; the per-expression paired difference against
the baseline, sorted, with the CI band of its mean (:mod:`decafbench.runstats`); for a sweep,
J&F against every swept parameter; how each fusion stage moves the attention diagnostics; a
per-expression table that sorts by any column and links each row to its embedded
:mod:`decafbench.show` figure. Large runs stay usable: figures exist only for the N worst
and N best expressions of the first run unless all are asked. The page is laid out for a
1400 px window and for print. Plots live in :mod:`decafbench.report_plots`; markup, inline
CSS/JS and data URIs in :mod:`decafbench.report_html`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import report_plots as plots
from .errors import InputError
from .report_html import data_uri, esc, frame_html, page
from .show import STAGE_ORDER

DIAG_METRICS = plots.DIAG_METRICS
#: diagnostics-table headers: whole words, so a narrow column wraps between words, never inside one
STAGE_HEADERS = {"object_video": "object video", "background_video": "background video",
                 "object_frame": "object frame", "background_frame": "background frame",
                 "contrastive_video": "contrastive video", "contrastive_frame": "contrastive frame",
                 "fused": "fused"}
#: manifest fields the runs table shows (as a note when every run has the same value)
RUN_FIELDS = ("benchmark", "split", "adapter", "checkpoint", "variant", "mask_kind")


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
    figure_dpi: int = 100
    fontsize: float = 12.0
    trust_pickle: bool = False  # only ever from the command line (--trust-pickle), never from a record


@dataclass
class ReportResult:
    html: str
    n_expressions: int
    n_figures: int
    notes: list[str] = field(default_factory=list)
    #: figures drawn without attention maps (cache entry or folder not found)
    missing_maps: int = 0
    warnings: list[str] = field(default_factory=list)


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


def distinct_labels(labels: Sequence[str]) -> list[str]:
    """The part of each run label that differs: with labels of the same word count, the words
    every label shares at the same place are dropped (``qwen2-vl:tiny decaf[sigma=2.0] coarse``
    among ``... decaf[sigma=0.5] coarse`` -> ``decaf[sigma=2.0]``); the full labels when that
    would make two equal or one empty."""
    words = [str(lab).split() for lab in labels]
    if len(labels) > 1 and len({len(w) for w in words}) == 1:
        keep = [i for i in range(len(words[0])) if len({w[i] for w in words}) > 1]
        short = [" ".join(w[i] for i in keep) for w in words]
        if all(short) and len(set(short)) == len(short):
            return short
    return [str(lab) for lab in labels]


def expression_table(records: Sequence[Any], labels: Sequence[str], baseline: int | None = None) -> Any:
    """One row per expression of any run (sorted by video, exp_id). Columns: keys, the first
    run's object word, J, F, J&F (points) and fused-map diagnostics, each other run's J&F, the
    first run's J&F minus the baseline's, the first run's error. ``labels`` name the runs in
    the headers (the report passes the short ids R1, R2...)."""
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


def sweep_settings(rec: Any) -> dict[str, Any]:
    """A record's swept settings: its fusion parameters and, for SAM2 masks, the thresholds."""
    m = rec.manifest
    out = dict(m["variant_params"]) if isinstance(m.get("variant_params"), dict) else {}
    mask = m.get("mask_params") if isinstance(m.get("mask_params"), dict) else {}
    if m.get("mask_kind") == "sam2":
        out.update({k: mask[k] for k in ("point_threshold", "final_score_threshold") if k in mask})
    return out


def sweep_panels(records: Sequence[Any], cis: dict[int, tuple[float, float, float]]):
    """What :func:`decafbench.report_plots.sweep_plot` draws: for every setting that takes more
    than one value among the records and every mask kind, one series per combination of the
    variant and the other swept settings, with at least two values of the setting.
    ``cis``: record index -> (mean, CI low, CI high) in points."""
    settings = [sweep_settings(r) for r in records]
    kinds = [str(r.manifest.get("mask_kind") or "") for r in records]
    variants = [str(r.manifest.get("variant") or "") for r in records]
    every = sorted({k for s in settings for k in s})
    swept = [k for k in every if len({json.dumps(s[k], sort_keys=True, default=str) for s in settings if k in s}) > 1]
    panels = []
    for p in swept:
        for kind in sorted(set(kinds)):
            groups: dict[tuple, list[int]] = {}
            for i, s in enumerate(settings):
                if kinds[i] == kind and p in s and i in cis:
                    rest = tuple((k, json.dumps(s.get(k), default=str)) for k in swept if k != p and k in s)
                    groups.setdefault((variants[i], rest), []).append(i)
            series = []
            for (variant, rest), idx in sorted(groups.items()):
                if len({json.dumps(settings[i][p], default=str) for i in idx}) < 2:
                    continue
                label = " ".join([variant, *(f"{k}={json.loads(v)}" for k, v in rest)])
                series.append((label, [settings[i][p] for i in idx], *([cis[i][j] for i in idx] for j in range(3))))
            if series:
                panels.append((p, kind, series))
    return panels


# -- the report's sections ---------------------------------------------------------------------------
@dataclass
class _Context:
    """What every section reads: the records, their labels and ids, the options, the notes."""

    records: list[Any]
    labels: list[str]  # full labels (manifest names)
    base_idx: int | None
    opts: ReportOptions
    notes: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [f"R{i + 1}" for i in range(len(self.records))]

    @property
    def names(self) -> list[str]:
        """``R1 <the part of the label that differs>``: how plots name runs."""
        return [f"{i} {plots.shorten(s, 44)}" for i, s in zip(self.ids, distinct_labels(self.labels))]

    @property
    def scored(self) -> list[int]:
        m = self.opts.metric
        return [i for i, r in enumerate(self.records) if m in r.table and len(r.scores(m))]


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


def _img(fig: Any, alt: str) -> str:
    """A plot as an inline PNG; ``data-axes`` holds each panel's [x label, y label] as JSON."""
    axes = json.dumps(plots.axes_labels(fig))
    return f'<img class="plot" alt="{esc(alt)}" data-axes="{esc(axes)}" src="{data_uri(fig)}">'


def _runs_section(ctx: _Context) -> tuple[str, str, str]:
    import pandas as pd

    from .tables import identity_value

    values = {k: [identity_value(r.manifest, k) for r in ctx.records] for k in RUN_FIELDS}
    same = {k: v[0] for k, v in values.items() if len(set(v)) == 1 and v[0]}
    rows = []
    for i, (r, lab) in enumerate(zip(ctx.records, ctx.labels)):
        role = ("figures" if i == 0 else "") + (" baseline" if i == ctx.base_idx else "")
        rows.append({"id": ctx.ids[i], "run": lab, "role": role.strip(),
                     **{("masks" if k == "mask_kind" else k): values[k][i] for k in RUN_FIELDS if k not in same},
                     "expressions": int(len(r.table)),
                     "failed": int(r.table["error"].fillna("").astype(str).str.len().astype(bool).sum())
                     if "error" in r.table else 0,
                     "folder": str(r.path)})
    note = ("All runs: " + ", ".join(f"{'masks' if k == 'mask_kind' else k} = {v}" for k, v in same.items()) + ". ") \
        if same else ""
    body = (f'<p class="note">{esc(note)}Plots and table headers name runs by their id; the full label is here.</p>'
            + frame_html(pd.DataFrame(rows), "runs-table", sortable=False))
    return "runs", "Runs", body


def _leaderboard_section(ctx: _Context) -> tuple[str, str, str] | None:
    from . import tables

    if not ctx.scored:
        ctx.notes.append("no run has scores (no ground truth): leaderboard and plots skipped.")
        return None
    o = ctx.opts
    board = tables.build_leaderboard([ctx.records[i] for i in ctx.scored], resamples=o.resamples, seed=o.seed,
                                     confidence=o.confidence)
    return "leaderboard", "Leaderboard", f'<div class="wide">{tables.to_html(board)}</div>'


def _distribution_section(ctx: _Context) -> tuple[str, str, str] | None:
    keep = [i for i in range(len(ctx.records)) if "JF" in ctx.records[i].table]
    fig = plots.distribution_plot([100.0 * ctx.records[i].scores("JF").to_numpy() for i in keep],
                                  [ctx.names[i] for i in keep]) if ctx.scored else None
    return ("distribution", "J&F distribution per run", _img(fig, "J&F distributions")) if fig else None


def _paired_section(ctx: _Context) -> tuple[str, str, str] | None:
    from . import runstats

    recs, b, o = ctx.records, ctx.base_idx, ctx.opts
    if b is None or len(recs) < 2 or len(ctx.scored) != len(recs):
        return None
    others = [i for i in range(len(recs)) if i != b]
    aligned = runstats.align_runs([recs[b]] + [recs[i] for i in others], o.metric)
    _, cmp = runstats.analyse_runs(aligned, baseline=0, resamples=o.resamples, seed=o.seed, confidence=o.confidence)
    diffs = [(ctx.names[i], paired_differences(recs[b], recs[i], o.metric), row.diff, row.ci_low, row.ci_high)
             for i, row in zip(others, cmp.itertuples())]
    pct = round(100 * o.confidence)
    shown = cmp.assign(run_a=ctx.ids[b], run_b=[ctx.ids[i] for i in others])
    shown = shown.rename(columns={"ci_low": f"{pct}% CI low", "ci_high": f"{pct}% CI high", "diff": "diff (points)"})
    body = (f'<p class="note">Paired over the {len(aligned.keys)} expressions every run scored; diff = run_b '
            f'\u2212 run_a (points), percentile bootstrap CI ({o.resamples} resamples, seed {o.seed}), '
            'p-values two-sided, Holm over the permutation p-values. Runs by id (see Runs).</p>'
            + frame_html(shown, "paired-table", digits={"n": 0}, sortable=False)
            + _img(plots.paired_plot(diffs, ctx.names[b]), "paired differences"))
    return "paired", f"Paired difference against {ctx.ids[b]}", body


def _run_ci(ctx: _Context, i: int) -> tuple[float, float, float]:
    from .stats import bootstrap_ci

    s = 100.0 * ctx.records[i].scores(ctx.opts.metric)
    ci = bootstrap_ci(s.to_numpy(), clusters=np.asarray(s.index.get_level_values(0)), resamples=ctx.opts.resamples,
                      confidence=ctx.opts.confidence, seed=ctx.opts.seed)
    return ci.estimate, ci.low, ci.high


def _sweep_section(ctx: _Context) -> tuple[str, str, str] | None:
    if len(ctx.scored) < 2:
        return None
    panels = sweep_panels(ctx.records, {i: _run_ci(ctx, i) for i in ctx.scored})
    if not panels:
        return None
    pct = round(100 * ctx.opts.confidence)
    body = (f'<p class="note">Mean J&amp;F with its {pct}% cluster-bootstrap CI (unit video, {ctx.opts.resamples} '
            'resamples) against each setting that differs between the runs, one panel per mask kind; each line '
            'holds the variant and the other settings fixed.</p>'
            + _img(plots.sweep_plot(panels), "J&F against each swept parameter"))
    return "sweep", "Sweep: J&F against each swept parameter", body


def _diagnostics_section(ctx: _Context) -> tuple[str, str, str] | None:
    import pandas as pd

    diags = [(i, stage_diagnostics(r)) for i, r in enumerate(ctx.records)]
    diags = [(i, df) for i, df in diags if len(df)]
    if not diags:
        return None
    rows = []
    for i, df in diags:
        for j, m in enumerate(DIAG_METRICS):
            rows.append({"run": ctx.ids[i] if j == 0 else "", "metric": m,
                         **{STAGE_HEADERS.get(s, s.replace("_", " ")): df.loc[s, m] for s in df.index}})
    legend = ('Mean over expressions of each stage\'s diagnostics against the key frames\' ground truth. '
              'Metrics: iou = IoU of the stage\'s Otsu mask, hit = pointing game (the peak lies on the target), '
              'mass = share of attention inside the target. Stages: object / background = the raw rollout map of '
              'the object / background prompt; video / frame = the view; contrastive = object minus background; '
              'fused = the final DecAF map. Read left to right: how each fusion step moves the object signal.')
    body = (f'<p class="note">{esc(legend)}</p>' + frame_html(pd.DataFrame(rows), "diagnostics-table", sortable=False)
            + _img(plots.diagnostics_plot([(ctx.names[i], df) for i, df in diags],
                                          {s: STAGE_HEADERS.get(s, s) for s in STAGE_ORDER}),
                   "diagnostics per stage"))
    return "diagnostics", "Diagnostics per fusion stage", body


def _benchmark(ctx: _Context) -> tuple[Any, dict]:
    """The first record's benchmark and its expression texts (``None``, {} when unreadable)."""
    try:
        from decafbench.benchmarks.registry import get_benchmark

        m = ctx.records[0].manifest
        # trust (reading a pickle runs code) comes only from the person running the report, never
        # from a record, which may have been sent by anyone
        bench = get_benchmark(str(m.get("benchmark")), root=ctx.opts.root or m.get("root"), split=m.get("split"),
                              trust_pickle=ctx.opts.trust_pickle)
        return bench, {(e.video, str(e.exp_id)): e.text for e in bench.expressions()}
    except InputError as exc:
        ctx.notes.append(f"benchmark of {ctx.labels[0]} not readable ({exc}); no expression texts or figures.")
        return None, {}


def _figures(ctx: _Context, picks: Sequence[tuple[tuple[str, str], str]], texts: dict,
             bench: Any) -> tuple[str, dict[tuple[str, str], str], int]:
    """Embedded ``show`` figures (JPEG), the anchor of each expression drawn and how many
    figures lack their attention maps."""
    from .show_record import load_expression_view

    o, rec = ctx.opts, ctx.records[0]
    blocks, anchors, no_maps = [], {}, 0
    for (video, exp_id), tag in picks:
        aid = anchor(video, exp_id)
        anchors[(video, exp_id)] = aid
        head = f"{tag + ': ' if tag else ''}{video} / {exp_id}: \u201c{texts.get((video, exp_id), '')}\u201d"
        try:
            view = load_expression_view(rec.path, video, exp_id, cache_dir=o.cache_dir, root=o.root,
                                        record=rec, benchmark=bench)
            no_maps += view.maps_missing
            fig = view.figure(thumb_width=o.thumb_width, dpi=o.figure_dpi, fontsize=o.fontsize)
            img = (f'<img class="thumb" alt="attention overlays of {esc(video)} / {esc(exp_id)}" '
                   f'title="click to enlarge" src="{data_uri(fig, "jpeg")}">')
            extra = "".join(f'<br><span class="note">{esc(n)}</span>' for n in view.notes)
        except Exception as exc:  # noqa: BLE001 - one missing figure must not sink the report
            img, extra = "", f'<br><span class="err">figure unavailable: {esc(" ".join(str(exc).split()))}</span>'
            ctx.notes.append(f"figure {video}/{exp_id}: {' '.join(str(exc).split())}")
        blocks.append(f'<figure id="{aid}"><figcaption>{esc(head)} <a href="#expressions">back to the table</a>'
                      f'{extra}</figcaption>{img}</figure>')
    return '<div class="figs">' + "\n".join(blocks) + "</div>", anchors, no_maps


def _expressions_section(ctx: _Context, texts: dict, anchors: dict) -> tuple[tuple[str, str, str], int]:
    table = expression_table(ctx.records, ctx.ids, ctx.base_idx)
    if texts:
        table.insert(2, "expression", [texts.get((v, e), "") for v, e in zip(table["video"], table["exp_id"])])
    links = [f'<td data-v="1"><a href="#{anchors[k]}">figure</a></td>' if k in anchors else '<td data-v="">\u2013</td>'
             for k in zip(table["video"], table["exp_id"])]
    digits = {c: (1 if c in ("J", "F", "J&F") or c.startswith(("J&F ", "\u0394")) else 2) for c in table.columns}
    body = (f'<p class="note">{len(table)} expressions; J, F, J&amp;F in points of {ctx.ids[0]} (the first run), '
            'other runs\' J&amp;F by id. Click a column header to sort.</p><div class="scroll">'
            + frame_html(table, "expr-table", digits=digits, extra={"figure": links}) + "</div>")
    return ("expressions", "Per-expression results", body), len(table)


def build_report(runs: Sequence[str | Path], *, baseline: str | Path | None = None,
                 options: ReportOptions | None = None) -> ReportResult:
    """The report as an HTML string; ``runs[0]`` is the run whose figures are drawn."""
    from . import runstats

    records, base_idx = _load_records(runs, baseline)
    ctx = _Context(records, runstats.unique_labels(records), base_idx, options or ReportOptions())
    sections = [s for s in (f(ctx) for f in (_runs_section, _leaderboard_section, _distribution_section,
                                             _paired_section, _sweep_section, _diagnostics_section)) if s]
    bench, texts = _benchmark(ctx)
    picks = select_figures(records[0], ctx.opts.figures, ctx.opts.metric) if bench is not None else []
    figs_html, anchors, no_maps = _figures(ctx, picks, texts, bench)
    expressions, n_expressions = _expressions_section(ctx, texts, anchors)
    sections.append(expressions)
    which = "every expression" if ctx.opts.figures is None else f"the {ctx.opts.figures} worst and best expressions by J&F"
    sections.append(("figures", f"Attention overlays of {ctx.ids[0]}",
                     f'<p class="note">Figures of {esc(ctx.labels[0])} for {which}; click one to enlarge '
                     '(Escape or a click closes it).</p>' + figs_html))
    warnings = []
    if no_maps:
        warnings.append(f"attention maps missing for {no_maps} of {len(picks)} figures (cache not found where the "
                        "manifest says); pass --cache DIR")
    title = "decafbench report: " + (ctx.labels[0] if len(records) == 1 else
                                     f"{len(records)} runs, figures of {ctx.labels[0]}")
    return ReportResult(page(title, sections), n_expressions, len(anchors), ctx.notes, no_maps, warnings)


def write_report(runs: Sequence[str | Path], out: str | Path, *, baseline: str | Path | None = None,
                 options: ReportOptions | None = None) -> ReportResult:
    """:func:`build_report` written atomically to ``out``."""
    from .runstore import atomic_write_text

    result = build_report(runs, baseline=baseline, options=options)
    atomic_write_text(out, result.html)
    return result
