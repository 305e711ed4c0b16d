"""The HTML side of ``decaf report``: page template, inline CSS and JS, tables, data URIs.

Why apart from :mod:`decafbench.report`: that module decides what the report says (numbers,
plots, sections); this one only knows how a self-contained page is written, so the markup,
the escaping rules and the sorting script can be read and changed in one place. Everything
is inline (no network at view time): images as base64 data URIs, CSS in ``<style>``, the
table-sorting and figure-zoom script in ``<script>``. Table cells carry their full-precision
value in ``data-v`` so the script sorts numbers as numbers and blanks last.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Sequence

import numpy as np


def data_uri(fig: Any, fmt: str = "png", dpi: int | None = None) -> str:
    """A matplotlib figure as an inline ``data:image/...;base64`` URI (PNG without
    matplotlib's Software tag; JPEG at quality 85, as used for the figure thumbnails)."""
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"pil_kwargs": {"quality": 85}} if fmt == "jpeg" else {"metadata": {"Software": None}}
    fig.savefig(buf, format=fmt, dpi=dpi or fig.dpi, **kwargs)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def esc(value: Any) -> str:
    """HTML-escaped text, quotes included (safe inside attribute values)."""
    return html.escape(str(value), quote=True)


def cell(value: Any, digits: int) -> str:
    """``<td>`` with the full-precision sort value in ``data-v``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f'<td class="num" data-v="{int(value)}">{int(value)}</td>'
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return '<td class="num" data-v="">\u2013</td>'
        return f'<td class="num" data-v="{v!r}">{v:.{digits}f}</td>'
    return f'<td data-v="{esc(value)}">{esc(value)}</td>'


def frame_html(df: Any, table_id: str, digits: dict[str, int] | None = None, extra: dict[str, list[str]] | None = None,
               sortable: bool = True) -> str:
    """A DataFrame as an HTML table; ``extra``: column -> ready-made ``<td>`` strings."""
    digits = digits or {}
    extra = extra or {}
    cols = list(df.columns) + list(extra)
    head = "".join(f'<th scope="col" title="sort by {esc(c)}">{esc(c)}</th>' for c in cols)
    body = []
    for i, row in enumerate(df.itertuples(index=False)):
        tds = [cell(v, digits.get(c, 2)) for c, v in zip(df.columns, row)]
        tds += [extra[c][i] for c in extra]
        body.append("<tr>" + "".join(tds) + "</tr>")
    cls = ' class="sortable"' if sortable else ""
    return (f'<table id="{table_id}"{cls}><thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
            + "\n</tbody></table>")


def page(title: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: inline CSS and JS, a navigation bar, ``(id, heading, body)`` sections."""
    nav = " ".join(f'<a href="#{sid}">{esc(h)}</a>' for sid, h, _ in sections)
    body = "\n".join(f'<section id="{sid}"><h2>{esc(h)}</h2>\n{content}\n</section>' for sid, h, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\"><style>{CSS}</style></head>\n"
            f"<body><header><h1>{esc(title)}</h1><nav>{nav}</nav></header>\n<main>\n{body}\n</main>\n"
            f"<script>{JS}</script></body></html>\n")


CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2327;background:#fafafa}
header{background:#264653;color:#fff;padding:10px 24px}
header h1{font-size:18px;margin:0 0 4px;overflow-wrap:anywhere} nav a{color:#e9c46a;margin-right:14px;text-decoration:none;display:inline-block}
main{padding:8px 24px 48px;max-width:100%} section{margin:22px 0} h2{font-size:16px;border-bottom:1px solid #ccc;padding-bottom:3px}
table{border-collapse:collapse;font-size:12.5px;background:#fff;margin:6px 0;max-width:100%}
th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top}
th{background:#eef2f3;word-break:keep-all;overflow-wrap:normal;hyphens:none}
td{overflow-wrap:break-word}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;overflow-wrap:normal}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"} table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
#diagnostics-table th{min-width:5.5em} #runs-table td:last-child{min-width:14em;overflow-wrap:anywhere}
.wide{max-width:100%;overflow-x:auto}
.scroll{max-height:70vh;overflow:auto;border:1px solid #ddd;max-width:100%} .scroll thead th{position:sticky;top:0}
.scroll table{margin:0}
img.plot{display:block;max-width:100%;height:auto;background:#fff}
.figs{display:flex;flex-direction:column;gap:18px} figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}
figure:target{outline:3px solid #e9c46a} img.thumb{display:block;max-width:100%;height:auto;cursor:zoom-in}
figcaption{font-size:13px;margin:0 0 6px} .note{color:#5c6670;font-size:12.5px} .err{color:#b00020}
#zoom{position:fixed;inset:0;background:rgba(20,24,28,.92);overflow:auto;z-index:10;cursor:zoom-out;display:none}
#zoom.open{display:block} #zoom img{display:block;margin:12px auto;max-width:none;background:#fff}
@media print{
  body{background:#fff;font-size:11pt} header{background:none;color:#000;padding:0} nav,#zoom{display:none}
  main{padding:0} a{color:inherit;text-decoration:none}
  .scroll,.wide{max-height:none;overflow:visible;border:0} .scroll thead th{position:static}
  img.plot,img.thumb{max-width:100%;cursor:auto} figure,img.plot,tr{break-inside:avoid} h2{break-after:avoid}
  table{font-size:9pt}
}
"""

JS = """
(function () {
  function key(td) {
    var v = td.getAttribute('data-v');
    if (v === null) { v = td.textContent; }
    if (v === '') { return null; }
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function compare(a, b) {
    if (a === b) { return 0; }
    if (typeof a === 'number' && typeof b === 'number') { return a < b ? -1 : 1; }
    if (typeof a === 'number') { return -1; }
    if (typeof b === 'number') { return 1; }
    return a < b ? -1 : 1;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.map.call(body.rows, function (r, i) { return [key(r.cells[col]), i, r]; });
        rows.sort(function (x, y) {
          if (x[0] === null || y[0] === null) {
            return x[0] === y[0] ? x[1] - y[1] : (x[0] === null ? 1 : -1);
          }
          var c = compare(x[0], y[0]);
          return c !== 0 ? (asc ? c : -c) : x[1] - y[1];
        });
        rows.forEach(function (x) { body.appendChild(x[2]); });
      });
    });
  });
  // enlarged figure: full resolution in an overlay that scrolls both ways, so nothing is cut off
  var zoom = document.createElement('div');
  zoom.id = 'zoom';
  zoom.setAttribute('role', 'dialog');
  zoom.setAttribute('aria-label', 'enlarged figure (click or Escape to close)');
  var big = document.createElement('img');
  big.alt = 'enlarged figure';
  zoom.appendChild(big);
  document.body.appendChild(zoom);
  function close() { zoom.classList.remove('open'); big.removeAttribute('src'); }
  zoom.addEventListener('click', close);
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') { close(); } });
  document.querySelectorAll('img.thumb').forEach(function (img) {
    img.addEventListener('click', function () {
      big.src = img.src;
      zoom.classList.add('open');
      zoom.scrollTop = 0;
      zoom.scrollLeft = 0;
    });
  });
})();
"""
