"""decaf report: one self-contained HTML file, numbers checked against slow references, and
opened in a real headless Chromium (selenium + chromedriver)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from helpers_show import build_records, cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = build_records(root)
    out["other"] = build_records(root, seed=1, variant="object-only", kinds=("coarse",), shift=-0.1)["coarse"]
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> list[Path]:
    """A sweep as `decaf sweep` writes it: sigma in 3 values x (coarse, SAM2 at pq 0.7), 4 expressions."""
    root = tmp_path_factory.mktemp("sweep")
    out = []
    for i, sigma in enumerate((0.5, 1.0, 2.0)):
        recs = build_records(root, limit=4, params={"sigma": sigma}, shift=0.05 * i, mask_params={"point_threshold": 0.7})
        out += [recs["coarse"], recs["sam2"]]
    return out


@pytest.fixture(scope="module")
def sweep_report(sweep, tmp_path_factory) -> Path:
    from decafbench.report import ReportOptions, write_report

    out = tmp_path_factory.mktemp("sweep-report") / "sweep.html"
    result = write_report(sweep, out, options=ReportOptions(figures=1, resamples=200))
    assert result.notes == [] and result.warnings == []
    return out


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> Path:
    from decafbench.report import ReportOptions, write_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    result = write_report([runs["sam2"], runs["other"]], out, baseline=runs["coarse"],
                          options=ReportOptions(figures=1, resamples=200))
    assert result.n_expressions == 8 and result.n_figures == 2 and result.notes == []
    return out


class _Doc(HTMLParser):
    """Collects what the checks need: tags with attributes, rows of each table, ids."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()
        self.table: list[str] = []
        self.rows: dict[str, int] = {}
        self.section = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self.table.append(a.get("id", ""))
        if tag == "tbody":
            self.section = "body"
        if tag == "tr" and self.table and self.section == "body":
            self.rows[self.table[-1]] = self.rows.get(self.table[-1], 0) + 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.section = ""
        if tag == "table" and self.table:
            self.table.pop()


# -- numbers -----------------------------------------------------------------------------------------
def test_paired_differences_match_reference(runs):
    from decafbench.report import paired_differences
    from decafbench.runstore import read_record

    a, b = read_record(runs["coarse"]), read_record(runs["other"])
    got = paired_differences(a, b)
    ref = {}
    for _, ra in a.table.iterrows():
        for _, rb in b.table.iterrows():
            if (ra["video"], ra["exp_id"]) == (rb["video"], rb["exp_id"]) and not ra["error"] and not rb["error"]:
                ref[(ra["video"], ra["exp_id"])] = 100 * (rb["JF"] - ra["JF"])
    assert sorted(got.index) == sorted(ref)
    np.testing.assert_allclose(got.to_numpy(), sorted(ref.values()), atol=1e-9)
    assert list(got.to_numpy()) == sorted(got.to_numpy())


def _record(tmp_path, rows, name="r"):
    from decafbench.runstore import RunWriter, base_manifest, read_record

    w = RunWriter(tmp_path / name, base_manifest("evaluate", command=["t"], name=name, benchmark="embedded"))
    for r in rows:
        w.add(r)
    w.finalize()
    return read_record(tmp_path / name)


def test_stage_diagnostics_match_reference(tmp_path):
    from decafbench.report import stage_diagnostics

    rng = np.random.default_rng(0)
    rows = []
    for i in range(7):
        row = {"video": f"v{i % 3}", "exp_id": str(i), "JF": rng.random(), "error": "boom" if i == 6 else ""}
        for s in ("fused", "object_video", "contrastive_frame"):
            for m in ("iou", "hit", "mass"):
                row[f"diag_{s}_{m}"] = float("nan") if (i == 2 and m == "hit") else rng.random()
        rows.append(row)
    rec = _record(tmp_path, rows)
    got = stage_diagnostics(rec)
    assert list(got.index) == ["object_video", "contrastive_frame", "fused"]  # fusion order
    for s in got.index:
        for m in ("iou", "hit", "mass"):
            vals = [r[f"diag_{s}_{m}"] for r in rows if not r["error"] and not math.isnan(r[f"diag_{s}_{m}"])]
            assert got.loc[s, m] == pytest.approx(sum(vals) / len(vals))


def test_select_figures(tmp_path):
    from decafbench.report import select_figures

    jf = [0.5, 0.1, 0.9, 0.1, 0.7, float("nan")]
    rec = _record(tmp_path, [{"video": "v", "exp_id": str(i), "JF": x, "error": ""} for i, x in enumerate(jf)])
    scored = sorted(((x, ("v", str(i))) for i, x in enumerate(jf) if not math.isnan(x)))
    picks = select_figures(rec, 2)
    assert [k for k, _ in picks] == [scored[0][1], scored[1][1], scored[-1][1], scored[-2][1]]
    assert [t for _, t in picks] == ["worst #1", "worst #2", "best #1", "best #2"]
    assert sorted(k for k, _ in select_figures(rec, 10)) == sorted(k for _, k in scored)  # no duplicates
    assert len(select_figures(rec, None)) == 6 and select_figures(rec, 0) == []


def test_expression_table_is_one_row_per_expression(tmp_path):
    from decafbench.report import expression_table

    a = _record(tmp_path, [{"video": "v", "exp_id": str(i), "J": 0.5, "F": 0.5, "JF": 0.1 * i, "error": ""}
                           for i in range(3)], "a")
    b = _record(tmp_path, [{"video": "v", "exp_id": str(i), "J": 0.5, "F": 0.5, "JF": 0.2 * i, "error": ""}
                           for i in range(1, 5)], "b")
    t = expression_table([a, b], ["a", "b"], baseline=1)
    assert list(zip(t["video"], t["exp_id"])) == [("v", str(i)) for i in range(5)]
    delta = t["\u0394 J&F vs b"].to_numpy()
    ref = [100 * (0.1 * i - 0.2 * i) if 1 <= i <= 2 else float("nan") for i in range(5)]
    np.testing.assert_allclose(delta, ref, atol=1e-9)


def test_distinct_labels():
    from decafbench.report import distinct_labels

    labels = ["qwen2-vl:tiny decaf[sigma=0.5] coarse", "qwen2-vl:tiny decaf[sigma=2.0] coarse",
              "qwen2-vl:tiny decaf[sigma=2.0] sam2"]
    assert distinct_labels(labels) == ["decaf[sigma=0.5] coarse", "decaf[sigma=2.0] coarse", "decaf[sigma=2.0] sam2"]
    assert distinct_labels(["a b", "a b c"]) == ["a b", "a b c"]  # different shapes: unchanged
    assert distinct_labels(["only one"]) == ["only one"]


def test_histogram_bins_follow_the_data():
    from decafbench.report_plots import histogram_bins

    data = [np.array([1.0, 1.5, 2.0, 5.5]), np.array([3.0, 6.0])]
    bins = histogram_bins(data)
    assert bins[0] == 1.0 and bins[-1] == 6.0 and 5 <= len(bins) - 1 <= 40
    assert len(histogram_bins([np.random.default_rng(0).normal(50, 10, 20_000)])) - 1 == 40  # clamped
    assert list(histogram_bins([np.array([3.0, 3.0])])) == [2.5, 3.5]


def test_plots_are_labelled_and_data_scaled():
    import pandas as pd

    from decafbench.report_plots import axes_labels, diagnostics_plot, distribution_plot

    df = pd.DataFrame({"iou": [0.02, 0.03, 0.04], "hit": [0.01, 0.02, 0.02], "mass": [0.5, 0.52, 0.55]},
                      index=["object_video", "contrastive_video", "fused"])
    fig = diagnostics_plot([("R1 a", df), ("R2 b", df * 1.1)], {})
    for ax, m in zip(fig.axes, ("iou", "hit", "mass")):
        lo, hi = ax.get_ylim()
        vals = np.concatenate([df[m].to_numpy(), 1.1 * df[m].to_numpy()])
        assert lo <= vals.min() and hi >= vals.max()
        assert hi - lo <= 2.0 * (vals.max() - vals.min()), (m, lo, hi)  # not a fixed 0-1 axis
    assert all(x and y for x, y in axes_labels(fig))
    fig = distribution_plot([np.array([1.0, 2.0, 4.0]), np.array([2.0, 3.0, 6.0])], ["R1 a", "R2 b"])
    box, hist = fig.axes[:2]
    assert box.get_xlim()[0] >= 0.0 and box.get_xlim()[1] < 10  # J&F of 1..6 points drawn on 1..6, not 0..100
    assert hist.get_xlim()[1] < 10
    assert "mean" in [t.get_text() for t in box.get_legend().get_texts()]
    assert all(x and y for x, y in axes_labels(fig))


def test_sweep_panels_match_the_records(sweep):
    from decafbench.report import sweep_panels
    from decafbench.runstore import read_record

    records = [read_record(p) for p in sweep]
    cis = {i: (float(i), i - 1.0, i + 1.0) for i in range(len(records))}
    panels = sweep_panels(records, cis)
    assert [(p, k) for p, k, _ in panels] == [("sigma", "coarse"), ("sigma", "sam2")]
    for _, kind, series in panels:
        (label, xs, means, lows, highs), = series  # one line: variant decaf, nothing else swept
        idx = [i for i, r in enumerate(records) if r.manifest["mask_kind"] == kind]
        assert label.startswith("decaf") and xs == [records[i].manifest["variant_params"]["sigma"] for i in idx]
        assert means == [float(i) for i in idx] and lows == [i - 1.0 for i in idx]


# -- the document ----------------------------------------------------------------------------------------
def test_report_is_self_contained(report):
    text = report.read_text()
    doc = _Doc()
    doc.feed(text)
    assert doc.rows["expr-table"] == 8
    imgs = [a for t, a in doc.tags if t == "img"]
    assert len(imgs) >= 5 and all(a["src"].startswith("data:image/") for a in imgs)
    for tag, a in doc.tags:
        for attr in ("src", "href", "action", "data", "poster"):
            value = a.get(attr) or ""
            assert not value.startswith(("http:", "https:", "//", "file:")), (tag, a)
            if value.startswith("#"):
                assert value[1:] in doc.ids, f"dangling anchor {value}"
        if tag == "script":
            assert "src" not in a
        if tag == "link":
            assert a.get("href", "").startswith("data:")
    for needle in ("@import", "url(http", "<iframe"):
        assert needle not in text
    assert sum(1 for t, a in doc.tags if t == "figure") == 2
    assert {"leaderboard", "distribution", "paired", "diagnostics", "expressions", "figures"} <= doc.ids


def test_report_command(runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    code, stdout, _ = cli(["report", str(runs["other"]), "--out", str(out), "--figures", "0", "--resamples", "50"],
                           capsys)
    assert code == 0 and out.is_file() and "8 expressions, 0 figures" in stdout
    for args, msg in (([str(tmp_path / "missing")], "does not exist"), ([str(runs["other"]), "--figures", "x"], "--figures"),
                      ([str(runs["other"]), "--out", str(tmp_path / "r.txt")], ".html")):
        code, _, err = cli(["report", *args], capsys)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    code, stdout, _ = cli(["report", "--help"], capsys)
    assert code == 0 and "Example" in stdout


def test_report_without_cache_still_renders(runs, tmp_path):
    from decafbench.report import ReportOptions, build_report

    empty = tmp_path / "cache"
    empty.mkdir()
    res = build_report([runs["other"]], options=ReportOptions(figures=None, resamples=50, cache_dir=empty,
                                                              thumb_width=64))
    assert res.n_figures == 8 and "not in" in res.html  # every figure, each noting the missing maps
    assert res.missing_maps == 8 and len(res.warnings) == 1 and "missing for 8 of 8 figures" in res.warnings[0]


# -- a real browser --------------------------------------------------------------------------------
def _browser() -> tuple[str, str]:
    """Paths of Chromium and chromedriver; skip (or fail under CI=true) when either is missing."""
    problems = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("the selenium package is not installed (pip install selenium)")
    chrome = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if chrome is None:
        problems.append("no Chromium binary on PATH (apt-get install chromium)")
    if driver is None:
        problems.append("no chromedriver on PATH (apt-get install chromium-driver)")
    if problems:
        message = "browser test needs: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return chrome, driver


def _driver(tmp_path, width: int = 1400):
    chrome, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chrome
    profile = tempfile.mkdtemp(prefix="chrome-profile-", dir=tmp_path)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", f"--window-size={width},1000", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


#: elements whose right edge lies past the viewport (those inside a scrolling box are clipped
#: by it, so the box is what must fit), and headers whose text does not fit their cell
_OVERFLOW_JS = """
var vw = document.documentElement.clientWidth, out = [];
function scrolled(e) { for (var p = e.parentElement; p; p = p.parentElement) {
  var s = getComputedStyle(p); if (s.overflowX === 'auto' || s.overflowX === 'scroll' || p.id === 'zoom') return true; }
  return false; }
document.querySelectorAll('body *').forEach(function (e) {
  var r = e.getBoundingClientRect();
  if (r.width > 0 && r.right > vw + 0.5 && !scrolled(e)) out.push(e.tagName + '#' + e.id + ' right=' + r.right);
});
document.querySelectorAll('th').forEach(function (th) {
  if (th.scrollWidth > th.clientWidth + 1) out.push('cut header: ' + th.textContent);
});
if (document.documentElement.scrollWidth > vw) out.push('page scrolls sideways: ' + document.documentElement.scrollWidth);
return out;
"""


def _load(driver, page: Path) -> None:
    """Open ``page`` and wait until it is fully parsed and its images decoded (a loaded,
    shared machine can hand back control early on a page of several MB)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))


def test_report_fits_1400px_in_chromium(sweep_report, report, tmp_path):
    """Every section fits a 1400 px window (and print), every plot has labelled axes, the
    runs are told apart, an enlarged figure is shown whole; screenshots for a human in tmp_path."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = _driver(tmp_path)
    try:
        for page in (sweep_report, report):
            _load(driver, page)
            assert driver.execute_script(_OVERFLOW_JS) == []
            plots = driver.find_elements(By.CSS_SELECTOR, "img.plot")
            assert len(plots) >= 3
            for img in plots:
                panels = json.loads(img.get_attribute("data-axes"))
                assert panels and all(len(p) == 2 and p[0].strip() and p[1].strip() for p in panels), \
                    (img.get_attribute("alt"), panels)
            ids = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody td:first-child")]
            runs = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody td:nth-child(2)")]
            assert ids == [f"R{i + 1}" for i in range(len(ids))] and len(set(runs)) == len(runs)
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
            assert driver.execute_script(_OVERFLOW_JS) == []
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
        _load(driver, sweep_report)
        assert "sweep" in {e.get_attribute("id") for e in driver.find_elements(By.CSS_SELECTOR, "section")}
        driver.save_screenshot(str(tmp_path / "sweep-top.png"))
        thumb = driver.find_element(By.CSS_SELECTOR, "img.thumb")
        driver.execute_script("arguments[0].scrollIntoView()", thumb)
        shown = driver.execute_script("return [arguments[0].clientWidth, arguments[0].naturalWidth]", thumb)
        assert shown[0] <= 1400 and shown[0] >= min(shown[1], 1300)  # the thumbnail uses the page width
        thumb.click()
        zoom = driver.find_element(By.ID, "zoom")
        size = driver.execute_script("var i = arguments[0].querySelector('img'); "
                                     "return [i.clientWidth, i.naturalWidth, arguments[0].scrollWidth]", zoom)
        assert zoom.is_displayed() and size[0] == size[1] and size[2] >= size[1]  # full size, scrollable to its edge
        driver.save_screenshot(str(tmp_path / "zoom.png"))
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        assert not zoom.is_displayed()
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()


def test_report_in_headless_chromium(report, tmp_path):
    from selenium.webdriver.common.by import By

    driver = _driver(tmp_path)
    try:
        driver.get(report.resolve().as_uri())
        assert driver.title.startswith("decafbench report")
        rows = driver.find_elements(By.CSS_SELECTOR, "#expr-table tbody tr")
        assert len(rows) == 8
        heads = driver.find_elements(By.CSS_SELECTOR, "#expr-table thead th")
        names = [h.text.replace("\u25b2", "").replace("\u25bc", "").strip() for h in heads]
        col = names.index("J&F")
        read = ("return Array.from(document.querySelectorAll('#expr-table tbody tr'))"
                f".map(r => r.cells[{col}].getAttribute('data-v'))")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", heads[col])
        heads[col].click()
        up = [float(v) for v in driver.execute_script(read)]
        assert up == sorted(up) and heads[col].get_attribute("aria-sort") == "ascending"
        heads[col].click()
        down = [float(v) for v in driver.execute_script(read)]
        assert down == sorted(up, reverse=True)
        link = driver.find_element(By.CSS_SELECTOR, "#expr-table a[href^='#fig-']")
        link.click()
        assert driver.execute_script("return location.hash") == link.get_attribute("href")[len(report.resolve().as_uri()):]
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert [r for r in resources if not r.startswith("data:")] == []
        driver.save_screenshot(str(tmp_path / "report.png"))
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()
    assert (tmp_path / "report.png").stat().st_size > 10_000
