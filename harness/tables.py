"""Leaderboards: one table object, rendered to Markdown, CSV, LaTeX and HTML.

Why own renderers: pandas' Styler (``to_latex``/``to_html``) needs jinja2 and
``DataFrame.to_markdown`` needs tabulate, neither a dependency of decafbench. The
:class:`Table` keeps numbers (mean, CI, best, tie-with-best) rather than strings, so every
format shows the same facts; :meth:`Table.to_frame` is the pandas view (and the CSV).

A leaderboard has one row per method configuration (adapter, checkpoint, fusion variant,
mask kind from the run manifests; keys equal on every row move to a note) and one column
group per benchmark split (the manifest keys in ``group_by``); each group has J, F and J&F
columns. Runs whose expressions carry ReVOS-style splits (``referring`` and ``reasoning``)
get one group per split and an ``overall`` group, the mean of the two split means
(expressions weighted 1/(2 n_split)).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import metric_registry, runstats, stats
from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("md", "csv", "tex", "html", "json")
IDENTITY = ("adapter", "checkpoint", "variant", "mask_kind")
METRICS = (("J", "J"), ("F", "F"), ("JF", "J&F"))
REVOS_SPLITS = ("referring", "reasoning")
DAGGER = "\u2020"


@dataclass
class Cell:
    """One mean (points) with its CI; ``best`` in its column, ``tied`` = not significantly
    below the best (``p`` of the paired test against the best)."""

    value: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    best: bool = False
    tied: bool = False
    p: float = math.nan
    count: bool = False  # an ``n`` column: value is the number of expressions scored

    @property
    def empty(self) -> bool:
        return math.isnan(self.value)


@dataclass
class Table:
    index_names: list[str]
    index: list[tuple[str, ...]]
    groups: list[tuple[str, list[str]]]  # (group header, metric names)
    cells: list[list[Cell]]  # rows x flattened (group, metric) columns
    title: str = ""
    notes: list[str] = field(default_factory=list)
    digits: int = 1

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(g, m) for g, metrics in self.groups for m in metrics]

    def number(self, cell: Cell) -> str:
        if cell.empty:
            return ""
        return f"{int(cell.value)}" if cell.count else f"{cell.value:.{self.digits}f}"

    def halfwidth(self, cell: Cell) -> str:
        if cell.empty or cell.count or math.isnan(cell.low):
            return ""
        return f"\u00b1{(cell.high - cell.low) / 2:.{self.digits}f}"

    def to_frame(self) -> pd.DataFrame:
        """Flat numeric frame: id columns, then per group n and per metric value / ci_low /
        ci_high / best / tied."""
        import pandas as pd

        data: dict[str, list] = {name: [r[i] for r in self.index] for i, name in enumerate(self.index_names)}
        for c, (g, m) in enumerate(self.columns):
            col = [row[c] for row in self.cells]
            if m == "n":
                data[f"{g} n"] = [None if x.empty else int(x.value) for x in col]
                continue
            data[f"{g} {m}"] = [x.value for x in col]
            data[f"{g} {m} ci_low"] = [x.low for x in col]
            data[f"{g} {m} ci_high"] = [x.high for x in col]
            data[f"{g} {m} best"] = [x.best for x in col]
            data[f"{g} {m} tied"] = [x.tied for x in col]
        return pd.DataFrame(data)


# -- renderers ----------------------------------------------------------------------------------
_MD_SPECIAL = set("\\`*_[]|~")


def md_escape(s: str) -> str:
    """Untrusted text (run names, ids from manifests) as literal Markdown: HTML escaped (no raw
    tags or entities pass through), Markdown punctuation backslash-escaped, one line."""
    text = html.escape(" ".join(str(s).split()), quote=True)
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def to_markdown(t: Table) -> str:
    esc = md_escape

    def cell(c: Cell) -> str:
        if c.empty:
            return "\u2013"
        if c.count:
            return t.number(c)
        num = f"**{t.number(c)}**" if c.best else t.number(c)
        return f"{num} {t.halfwidth(c)}{DAGGER if c.tied else ''}".strip()

    head = [esc(n) for n in t.index_names] + [esc(f"{g} {m}") for g, m in t.columns]
    lines = [f"**{esc(t.title)}**", ""] if t.title else []
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join([":---"] * len(t.index_names) + ["---:"] * len(t.columns)) + "|")
    for key, row in zip(t.index, t.cells):
        lines.append("| " + " | ".join([esc(k) for k in key] + [cell(c) for c in row]) + " |")
    lines += [""] + [f"{esc(n)}  " for n in t.notes] if t.notes else []
    return "\n".join(lines).rstrip() + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        DAGGER: r"$^\dagger$", "\u00b1": r"$\pm$", "\u2013": "--"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(t: Table) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), notes as a paragraph below."""
    k = len(t.index_names)
    out = [r"\begin{tabular}{" + "l" * k + "r" * len(t.columns) + "}", r"\toprule"]
    top, rules, col = [""] * k, [], k + 1
    for g, metrics in t.groups:
        top.append(rf"\multicolumn{{{len(metrics)}}}{{c}}{{{tex_escape(g)}}}")
        rules.append(rf"\cmidrule(lr){{{col}-{col + len(metrics) - 1}}}")
        col += len(metrics)
    out += [" & ".join(top) + r" \\", " ".join(rules)]
    out.append(" & ".join([tex_escape(n) for n in t.index_names] +
                          [tex_escape(m) for _, m in t.columns]) + r" \\")
    out.append(r"\midrule")
    for key, row in zip(t.index, t.cells):
        cells = []
        for c in row:
            if c.empty:
                cells.append("--")
                continue
            num = rf"\textbf{{{t.number(c)}}}" if c.best else t.number(c)
            hw = rf"\,{{\scriptsize {tex_escape(t.halfwidth(c))}}}" if t.halfwidth(c) else ""
            cells.append(num + hw + (r"$^\dagger$" if c.tied else ""))
        out.append(" & ".join([tex_escape(x) for x in key] + cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:  # after the tabular, so long notes wrap to the text width
        out.append(r"\par\smallskip{\footnotesize " + " ".join(tex_escape(n) for n in t.notes) + "}")
    if t.title:
        out.insert(0, f"% {t.title}")
    return "\n".join(out) + "\n"


def to_html(t: Table) -> str:
    e = html.escape
    k = len(t.index_names)
    out = ["<table>"]
    if t.title:
        out.append(f"<caption>{e(t.title)}</caption>")
    out.append("<thead>")
    out.append("<tr>" + "".join(f'<th rowspan="2">{e(n)}</th>' for n in t.index_names) +
               "".join(f'<th colspan="{len(m)}">{e(g)}</th>' for g, m in t.groups) + "</tr>")
    out.append("<tr>" + "".join(f"<th>{e(m)}</th>" for _, m in t.columns) + "</tr>")
    out.append("</thead>\n<tbody>")
    for key, row in zip(t.index, t.cells):
        tds = [f"<td>{e(x)}</td>" for x in key]
        for c in row:
            if c.empty:
                tds.append("<td>&ndash;</td>")
                continue
            num = f"<strong>{t.number(c)}</strong>" if c.best else t.number(c)
            hw = f" <small>{e(t.halfwidth(c))}</small>" if t.halfwidth(c) else ""
            tds.append(f'<td style="text-align:right">{num}{hw}{"<sup>&dagger;</sup>" if c.tied else ""}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody>")
    if t.notes:
        span = k + len(t.columns)
        out.append("<tfoot>" + "".join(f'<tr><td colspan="{span}">{e(n)}</td></tr>' for n in t.notes) + "</tfoot>")
    out.append("</table>")
    return "\n".join(out) + "\n"


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def to_json(t: Table) -> str:
    """Rows with their id fields and, per group and metric, mean / CI / n in points; NaN is
    null. Machine-readable twin of the other formats (same facts, same notes)."""
    import json

    rows = []
    for key, cells in zip(t.index, t.cells):
        groups: dict[str, dict] = {}
        for (g, m), c in zip(t.columns, cells):
            if m == "n":
                groups.setdefault(g, {})["n"] = None if c.empty else int(c.value)
                continue
            groups.setdefault(g, {})[m] = None if c.empty else {
                "mean": _num(c.value), "ci_low": _num(c.low), "ci_high": _num(c.high), "n": c.n,
                "best": c.best, "tied_with_best": c.tied, "p_vs_best": _num(c.p)}
        rows.append({**dict(zip(t.index_names, key)), "groups": groups})
    doc = {"title": t.title, "index": t.index_names, "groups": [g for g, _ in t.groups],
           "rows": rows, "notes": t.notes}
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def render(t: Table, fmt: str) -> str:
    """The table as text in ``fmt`` (md, csv, tex, html or json)."""
    if fmt == "json":
        return to_json(t)
    if fmt == "md":
        return to_markdown(t)
    if fmt == "csv":
        return t.to_frame().to_csv(index=False)
    if fmt == "tex":
        return to_latex(t)
    if fmt == "html":
        return to_html(t)
    raise InputError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def format_for(path: str | None, fmt: str | None) -> str:
    """--format if given, else from the --out extension, else Markdown."""
    if fmt:
        return fmt
    ext = (path or "").rsplit(".", 1)[-1].lower() if path and "." in path else ""
    return {"md": "md", "markdown": "md", "csv": "csv", "tex": "tex", "latex": "tex",
            "html": "html", "htm": "html", "json": "json"}.get(ext, "md")


# -- leaderboards -------------------------------------------------------------------------------
def manifest_value(manifest: dict, key: str) -> str:
    """A manifest field, looked up at the top level and then under ``config``."""
    value = manifest.get(key)
    if value is None and isinstance(manifest.get("config"), dict):
        value = manifest["config"].get(key)
    return "" if value is None else str(value)


def identity_value(manifest: dict, key: str) -> str:
    """A leaderboard identity field with its full label: ``variant`` is the variant's label
    with its parameters (``decaf[sigma=2.0]``, not ``decaf``), ``mask_kind`` the mask label
    with non-default SAM2 thresholds (``sam2[pq=0.7,trk=0.8]``); other keys as stored."""
    if key == "variant":
        return manifest_value(manifest, "variant_label") or manifest_value(manifest, "variant")
    if key == "mask_kind":
        return mask_label(manifest)
    return manifest_value(manifest, key)


def mask_label(manifest: dict) -> str:
    """``mask_label`` from the manifest, else built from ``mask_kind`` and ``mask_params``."""
    if manifest.get("mask_label"):
        return str(manifest["mask_label"])
    kind = manifest_value(manifest, "mask_kind")
    mp = manifest.get("mask_params") if isinstance(manifest.get("mask_params"), dict) else {}
    pq, trk = mp.get("point_threshold", 0.8), mp.get("final_score_threshold", 0.8)
    return f"sam2[pq={pq},trk={trk}]" if kind == "sam2" and (pq, trk) != (0.8, 0.8) else kind


@dataclass
class _Column:
    """One run's scores for one (group, metric) column; ``splits`` set for ReVOS overall."""

    values: pd.Series
    splits: pd.Series | None = None

    def weights(self, keys) -> np.ndarray | None:
        if self.splits is None:
            return None
        s = self.splits.loc[keys]
        return (1.0 / (2.0 * s.map(s.value_counts()))).to_numpy(dtype=float)


def _run_columns(rec, group: str, metrics: Sequence[str], failures: str) -> list[tuple[str, str, _Column]]:
    """(group header, metric name, column) for every requested metric the run has."""
    t = rec.table
    split_of = t.assign(split=t["split"].astype(str).str.lower()).set_index(["video", "exp_id"])["split"]
    if split_of.index.duplicated().any():
        video, exp = split_of.index[split_of.index.duplicated()][0]
        raise InputError(f"expression ({video}, {exp}) appears twice", rec.path / "per_expression.csv")
    revos = set(split_of.unique()) - {""} == set(REVOS_SPLITS)
    out = []
    for name in (REVOS_SPLITS + ("overall",)) if revos else (None,):
        header = group if name is None else f"{group} {name}"
        for metric in metrics:
            if metric not in t:
                continue
            s = runstats.metric_scores(rec, metric, failures).values
            if name in REVOS_SPLITS:
                out.append((header, metric, _Column(s[split_of.loc[s.index] == name])))
            else:
                out.append((header, metric, _Column(s, split_of.loc[s.index] if revos else None)))
    return out


def _layout(records: Sequence, group_by: Sequence[str]):
    """Row keys (identity fields that vary; ``run`` where needed), their names, each run's
    group header, and the identity fields equal on every row (for a note)."""
    labels = runstats.unique_labels(records)
    ident = [tuple(identity_value(r.manifest, k) for k in IDENTITY) for r in records]
    keep = [i for i in range(len(IDENTITY)) if len({row[i] for row in ident}) > 1]
    constant = [f"{k}={ident[0][i]}" for i, k in enumerate(IDENTITY) if i not in keep and ident[0][i]]
    names = [IDENTITY[i] for i in keep]
    rows = [tuple(row[i] for i in keep) for row in ident]
    groups = [" ".join(v for v in (manifest_value(r.manifest, k) for k in group_by) if v) or "all"
              for r in records]
    if not names or len(set(zip(rows, groups))) < len(records):
        names, rows = ["run", *names], [(lab, *row) for lab, row in zip(labels, rows)]
    by_group: dict[str, list] = {}
    for rec, g in zip(records, groups):
        by_group.setdefault(g, []).append(rec)
    for members in by_group.values():  # a column's dagger test pairs its runs
        runstats.check_same_data(members)
    return names, rows, groups, constant


def _collect(records, rows, groups, metrics, failures):
    entries: dict[tuple, dict[tuple[str, str], _Column]] = {}
    col_order: list[tuple[str, str]] = []
    for rec, row, group in zip(records, rows, groups):
        for header, metric, column in _run_columns(rec, group, metrics, failures):
            entries.setdefault(row, {})[(header, metric)] = column
            if (header, metric) not in col_order:
                col_order.append((header, metric))
    if not col_order:
        raise InputError("no run has any of the metrics " + ", ".join(metrics))
    return entries, col_order


def _with_counts(index, col_order, cells):
    """Insert an ``n`` column (expressions scored) at the head of every group."""
    out_cols: list[tuple[str, str]] = []
    out_cells: list[list[Cell]] = [[] for _ in index]
    for c, (header, metric) in enumerate(col_order):
        if not out_cols or out_cols[-1][0] != header:
            out_cols.append((header, "n"))
            members = [k for k, (h, _) in enumerate(col_order) if h == header]
            for r in range(len(index)):
                ns = [cells[r][k].n for k in members if not cells[r][k].empty]
                out_cells[r].append(Cell(float(max(ns)), n=max(ns), count=True) if ns else Cell(count=True))
        out_cols.append((header, metric))
        for r in range(len(index)):
            out_cells[r].append(cells[r][c])
    return out_cols, out_cells


def _coverage_notes(records, labels, entries, index, col_order, failures) -> list[str]:
    notes = []
    failed = {lab: int(runstats.metric_scores(r, col_order[0][1], "drop").failed) for lab, r in zip(labels, records)}
    if any(failed.values()):
        how = "counted as empty masks" if failures == "zero" else "left out"
        notes.append(f"Failed expressions, {how} (--failures {failures}): "
                     + ", ".join(f"{lab}: {k}" for lab, k in failed.items() if k) + ".")
    for header in dict.fromkeys(h for h, _ in col_order):
        sets = [frozenset(col.values.index) for row in index for (h, _), col in entries[row].items()
                if h == header]
        if len(set(sets)) > 1:
            sizes = sorted(len(s) for s in sets)
            notes.append(f"{header}: rows cover different expressions (n {sizes[0]} to {sizes[-1]}, "
                         f"{len(frozenset.intersection(*sets))} shared); each CI uses its row's own "
                         "expressions, the test against the best the shared ones.")
        videos = min(len({key[0] for key in keys}) for keys in sets) if sets else 0
        if 0 < videos < runstats.FEW_VIDEOS:  # the same rule and words as decaf compare's warning
            notes.append(f"{header}: only {videos} video{'s' if videos != 1 else ''}; intervals and marks are "
                         f"unreliable below {runstats.FEW_VIDEOS} (too narrow, Bowyer et al. 2025).")
    return notes


def build_leaderboard(records: Sequence, *, group_by: Sequence[str] = ("benchmark", "split"),
                      unit: runstats.Unit = "video", resamples: int = 10_000, seed: int = 0,
                      confidence: float = 0.95, alpha: float = 0.05, digits: int = 1,
                      metrics: Sequence[str] = ("J", "F", "JF"), failures: str = "zero") -> Table:
    """Rows: configurations; columns per group: n, then each metric's mean with a bootstrap CI.

    Per column the best mean is bold (the lowest for a lower-is-better metric); a row is
    marked when a paired sign-flip permutation test against the best, on the expressions both
    share, gives p >= alpha (two-sided, no multiplicity adjustment, so a mark is the
    conservative claim). Rows are sorted by the first group's J&F (else its first metric).
    Every cell uses the same streams from ``seed``.
    """
    if not records:
        raise InputError("leaderboard needs at least one run record")
    if unit not in ("expression", "video"):
        raise InputError(f"--unit must be 'expression' or 'video', not {unit!r}")
    metrics = [metric_registry.get(m).name for m in metrics]
    labels = runstats.unique_labels(records)
    names, rows, groups, constant = _layout(records, group_by)
    entries, col_order = _collect(records, rows, groups, metrics, failures)
    index = list(entries)
    cells = [[Cell() for _ in col_order] for _ in index]
    for c, (_, metric) in enumerate(col_order):
        _fill_column(cells, c, [entries[r].get(col_order[c]) for r in index], unit, resamples, seed,
                     confidence, alpha, metric_registry.get(metric).higher_is_better)
    order = _sorted_rows(index, col_order, cells)
    cols, cells = _with_counts(index, col_order, cells)
    grouped: list[tuple[str, list[str]]] = []
    for header, metric in cols:
        if not grouped or grouped[-1][0] != header:
            grouped.append((header, []))
        grouped[-1][1].append("n" if metric == "n" else metric_registry.get(metric).label)
    notes = _notes(unit, resamples, seed, confidence, alpha, constant, col_order)
    notes += _coverage_notes(records, labels, entries, index, col_order, failures)
    return Table(names, [index[i] for i in order], grouped, [cells[i] for i in order],
                 title="", notes=notes, digits=digits)


def _sorted_rows(index, col_order, cells) -> list[int]:
    sort_col = next((c for c, (_, m) in enumerate(col_order) if m == "JF"), 0)
    sign = -1.0 if metric_registry.get(col_order[sort_col][1]).higher_is_better else 1.0

    def key(i: int) -> tuple:
        cell = cells[i][sort_col]
        return (cell.empty, 0.0 if cell.empty else sign * cell.value, index[i])

    return sorted(range(len(index)), key=key)


def _notes(unit, resamples, seed, confidence, alpha, constant, col_order) -> list[str]:
    pct = round(100 * confidence)
    notes = [f"Mean over expressions in points (0-100) \u00b1 half-width of the {pct}% percentile "
             f"bootstrap CI (unit={unit}, {resamples} resamples, seed={seed}); n = expressions scored.",
             f"Bold: best in its column. {DAGGER}: not significantly different from the best "
             f"(paired sign-flip permutation test on shared expressions, two-sided, alpha={alpha}, "
             "no multiplicity adjustment)."]
    if any(not metric_registry.get(m).higher_is_better for _, m in col_order):
        notes.append("Decay: lower is better (best = lowest).")
    if constant:
        notes.append("All rows: " + ", ".join(constant) + ".")
    if any(h.endswith(" overall") for h, _ in col_order):
        notes.append("overall = mean of the referring and reasoning split means.")
    return notes


def _fill_column(cells, c: int, columns: list[_Column | None], unit, resamples, seed,
                 confidence, alpha, higher_is_better: bool = True) -> None:
    """Mean and CI of every run in column ``c``, then the paired test of each against the best."""
    for r, col in enumerate(columns):
        if col is None or len(col.values) == 0:
            continue
        keys = col.values.index
        clusters = keys.get_level_values(0).to_numpy() if unit == "video" else None
        design = stats.Design.build(col.values.to_numpy(dtype=float), clusters, col.weights(keys))
        boot = stats.bootstrap_means(design, resamples, stats.streams(seed)[0])
        lo, hi = stats.percentile_interval(boot, confidence)
        cells[r][c] = Cell(100 * float(design.estimate()[0]), 100 * float(lo[0]), 100 * float(hi[0]),
                           n=len(keys))
    filled = [r for r, col in enumerate(columns) if col is not None and not cells[r][c].empty]
    if not filled:
        return
    pick = max if higher_is_better else min
    best = pick(filled, key=lambda r: cells[r][c].value)
    cells[best][c].best = True
    for r in filled:
        if r != best:
            _test_against_best(cells[r][c], columns[best], columns[r], unit, resamples, seed, alpha)


def _test_against_best(cell: Cell, best: _Column, other: _Column, unit, resamples, seed, alpha) -> None:
    shared = best.values.index.intersection(other.values.index).sort_values()
    if len(shared) == 0:
        return
    d = (other.values.loc[shared] - best.values.loc[shared]).to_numpy(dtype=float)
    clusters = shared.get_level_values(0).to_numpy() if unit == "video" else None
    design = stats.Design.build(d, clusters, best.weights(shared))
    flipped = stats.signflip_means(design, resamples, stats.streams(seed)[1])
    p = stats.permutation_p_two_sided(flipped, design.estimate(), stats.tie_tolerance(design))
    cell.p = float(p[0])
    cell.tied = bool(p[0] >= alpha)
