"""The HTML report builder and the stats plot."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from defectspectrum.errors import InputError
from defectspectrum.report import Report
from defectspectrum.report.plots import stats_figure


def _png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 20, 3), value, dtype=np.uint8)).save(path)
    return path


def _srcs(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def test_report_writes_html_and_relative_assets(tmp_path):
    outside = _png(tmp_path / "elsewhere" / "a b.png")
    twin = _png(tmp_path / "other" / "a b.png", 200)
    inside = _png(tmp_path / "out" / "show" / "sheet.png")
    report = Report("Demo", subtitle="tiny")
    report.add_heading("Overview")
    report.add_metrics({"samples": 1234, "ratio": 0.5})
    report.add_text("first\n\nsecond")
    report.add_table([["bolt", 3, 1.25], ["nut", None, 2.0]], header=["object", "images", "area"])
    report.add_image(outside, "outside")
    report.add_gallery([(twin, "twin"), (inside, "inside")])
    report.add_figure(_figure(), "stats plot", "a figure")
    path = report.write(tmp_path / "out" / "report.html")

    assert path == tmp_path / "out" / "report.html"
    html = path.read_text(encoding="utf-8")
    srcs = _srcs(html)
    assert len(srcs) == 4
    for src in srcs:
        assert not src.startswith(("/", "file:", "http")), src
        assert (path.parent / unquote(src)).is_file(), src
    # outside images are copied (same names kept apart), images in the folder are linked in place
    assert "show/sheet.png" in srcs
    copied = sorted(p.name for p in (path.parent / "report_files").iterdir())
    assert copied == ["a b-2.png", "a b.png", "stats_plot.png"]
    assert (path.parent / "report_files" / "a b-2.png").read_bytes() == twin.read_bytes()
    assert Image.open(path.parent / "report_files" / "stats_plot.png").format == "PNG"
    # self-contained: no scripts, no external style sheets, fonts or images
    assert "<script" not in html and "<link" not in html and "http://" not in html and "https://" not in html
    assert "1,234" in html and "<p>first</p><p>second</p>" in html
    assert '<td class=num>—</td>' in html


def test_report_escapes_text_captions_and_tables(tmp_path):
    image = _png(tmp_path / "x.png")
    report = Report("<Title> & co")
    report.add_heading("A <b>bold</b> heading")
    report.add_text('<script>alert("x")</script> & more', kind="warn")
    report.add_list(["<li>item</li>"])
    report.add_table([["<td>cell</td>"]], header=["<th>"])
    report.add_image(image, 'caption "quoted" <img src=x onerror=alert(1)>')
    html = report.write(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "<b>bold</b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in html
    assert "&lt;Title&gt; &amp; co" in html
    assert "&lt;td&gt;cell&lt;/td&gt;" in html and "&lt;th&gt;" in html and "&lt;li&gt;item&lt;/li&gt;" in html
    assert 'alt="caption &quot;quoted&quot; &lt;img src=x onerror=alert(1)&gt;"' in html
    assert '<div class="callout warn">' in html


def test_report_write_is_atomic(tmp_path):
    target = tmp_path / "report.html"
    first = Report("first")
    first.add_text("one")
    first.write(target)
    before = target.read_text(encoding="utf-8")
    image = _png(tmp_path / "gone.png")
    second = Report("second")
    second.add_image(image, "soon missing")
    image.unlink()
    with pytest.raises(InputError, match="gone.png"):
        second.write(target)
    assert target.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temp files left behind


def test_report_rejects_bad_input(tmp_path):
    report = Report("r")
    with pytest.raises(InputError, match="not found"):
        report.add_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="row 1 has 1 cells"):
        report.add_table([[1, 2], [3]], header=["a", "b"])
    with pytest.raises(InputError, match=".html"):
        report.write(tmp_path / "report.txt")


def test_headings_get_unique_anchors_and_a_table_of_contents(tmp_path):
    report = Report("r")
    for title in ("Stats", "Stats", "Splits"):
        report.add_heading(title)
    html = report.write(tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="stats"' in html and 'id="stats-2"' in html and 'href="#splits"' in html


def test_stats_figure_draws_counts_and_area_boxes():
    stats = {"objects": {
        "bolt": {"classes": [
            {"index": 1, "name": "rust", "images": 3, "regions": 5,
             "area_pct": {"p5": 0.01, "p25": 0.1, "p50": 0.5, "p75": 1.0, "p95": 4.0}},
            {"index": 2, "name": "bent", "images": 0, "regions": 0, "area_pct": None}]},
        "nut": {"classes": [
            {"index": 1, "name": "dent", "images": 2, "regions": 2,
             "area_pct": {"p5": 1, "p25": 2, "p50": 3, "p75": 4, "p95": 5}}]}}}
    fig = stats_figure(stats)
    counts_ax, area_ax = fig.axes[:2]
    ticks = sorted(zip(counts_ax.get_yticks(), (t.get_text() for t in counts_ax.get_yticklabels())))
    assert [label for _, label in ticks] == ["nut / dent", "bolt / bent", "bolt / rust"]  # first class at the top
    assert sorted(round(p.get_width()) for p in counts_ax.patches if p.get_height() < 1) == [0, 0, 2, 2, 3, 5]
    assert area_ax.get_xscale() == "log"
    assert len(area_ax.patches) == 2  # one box per class with regions
    with pytest.raises(InputError, match="objects"):
        stats_figure({"nothing": 1})


def test_backticks_mark_code_and_stay_escaped(tmp_path):
    report = Report("r")
    report.add_text("run `data split <DS>` first; a lone ` stays")
    report.add_list(["`<b>`"])
    html = report.write(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<p>run <code>data split &lt;DS&gt;</code> first; a lone ` stays</p>" in html
    assert "<li><code>&lt;b&gt;</code></li>" in html


def test_rollback_removes_blocks_and_headings_added_since_the_mark(tmp_path):
    report = Report("r")
    report.add_heading("Kept")
    mark = report.mark()
    report.add_heading("Dropped")
    report.add_text("dropped text")
    report.rollback(mark)
    report.add_heading("Dropped")  # its anchor is free again
    html = report.write(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "dropped text" not in html and 'id="dropped"' in html and 'id="dropped-2"' not in html


def test_long_text_columns_wrap_and_numbers_align_right(tmp_path):
    report = Report("r")
    report.add_table([["a", 1, "x" * 61], ["b", None, "short"]], header=["name", "n", "message"])
    html = report.write(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<th>name</th><th class=num>n</th><th class=wrap>message</th>" in html
    assert f"<td>a</td><td class=num>1</td><td class=wrap>{'x' * 61}</td>" in html
