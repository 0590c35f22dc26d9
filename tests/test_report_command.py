"""Report sections and `defectspectrum report DS_DIR`: the registry, each data section on a generated DS
folder, folders with nothing to show, and the command's output folder rules."""

from __future__ import annotations

import html as html_lib
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.captions import caption_folder
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.splits import assign_splits
from defectspectrum.data.stats import compute_stats
from defectspectrum.data.synth import write_ds_folder
from defectspectrum.data.validate import validate
from defectspectrum.errors import InputError
from defectspectrum.io import read_json, write_json_atomic
from defectspectrum.report import sections as registry
from defectspectrum.report.data_sections import check_stats_json, load_validation
from defectspectrum.report.ds_report import MARKER, default_out, write_ds_report
from defectspectrum.report.sections import (
    FunctionSection,
    ReportContext,
    SkipSection,
    build_report,
    get_sections,
    register,
    section_names,
)

DATA_SECTIONS = ["overview", "validation", "stats", "splits", "overlays"]
TITLES = ["Overview", "Validation", "Statistics", "Splits", "Overlays"]


@pytest.fixture(scope="module")
def ds(module_tmp) -> Path:
    """A small DS folder: 2 objects, 2 images per defect type, 2 defect-free each; no splits, no captions."""
    root = module_tmp("report") / "ds"
    write_ds_folder(root, materials=["metal", "wood"], n_defective_per_type=2, n_good=2, size=(48, 48), seed=2)
    return root


@pytest.fixture
def ds_copy(ds, tmp_path) -> Path:
    """A private copy of `ds` that a test may change."""
    return Path(shutil.copytree(ds, tmp_path / "ds"))


def _page(folder: DSFolder, tmp_path: Path, names: list[str], **context) -> tuple[str, Path, list]:
    """Render sections `names` into tmp_path/page/report.html; returns (html, html path, problems)."""
    path = tmp_path / "page" / "report.html"
    ctx = ReportContext(folder, html=path, **context)
    report, problems = build_report(ctx, get_sections(names), "t")
    report.write(path)
    return path.read_text(encoding="utf-8"), path, problems


def _metrics(html: str) -> dict[str, str]:
    pairs = re.findall(r'<div class="value">(.*?)</div><div class="label">(.*?)</div>', html)
    return {html_lib.unescape(label): html_lib.unescape(value) for value, label in pairs}


def _tables(html: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows) of every table, cell text unescaped."""
    tables = []
    for table in re.findall(r"<table>(.*?)</table>", html, re.S):
        header = [html_lib.unescape(h) for h in re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table)]
        body = table.split("<tbody>", 1)[1]
        rows = [[html_lib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
                for row in re.findall(r"<tr>(.*?)</tr>", body)]
        tables.append((header, rows))
    return tables


def _table(html: str, first_header: str, column: str) -> list[list[str]]:
    for header, rows in _tables(html):
        if header and header[0] == first_header and column in header:
            return rows
    raise AssertionError(f"no table with columns {first_header}, {column}")


def _h2(html: str) -> list[str]:
    return [html_lib.unescape(t) for t in re.findall(r"<h2 [^>]*>(.*?)</h2>", html)]


def _images_exist(html: str, page: Path) -> list[str]:
    srcs = [unquote(s) for s in re.findall(r'<img src="([^"]+)"', html)]
    for src in srcs:
        assert not src.startswith(("/", "http", "file:")), src
        assert (page.parent / src).is_file(), src
    return srcs


# -- the registry ------------------------------------------------------------------------------------------


def test_data_sections_come_first_in_page_order(monkeypatch):
    assert section_names() == DATA_SECTIONS
    assert [s.title for s in get_sections()] == TITLES
    # a requested subset keeps the page order, whatever order it was asked in
    assert [s.name for s in get_sections(["overlays", "overview", "overlays"])] == ["overview", "overlays"]
    monkeypatch.setattr(registry, "SECTIONS", dict(registry.SECTIONS))
    for name in ("zzz", "click", "seg"):  # registered out of order: the explicit order decides
        register(FunctionSection(name, name.upper(), lambda context, report: None))
    assert section_names() == [*DATA_SECTIONS, "seg", "click", "zzz"]


def test_unknown_section_is_one_line_listing_the_valid_ones():
    with pytest.raises(InputError) as caught:
        get_sections(["overview", "histogram"])
    assert str(caught.value) == ("unknown report section(s) 'histogram'; choose from: "
                                 "overview, validation, stats, splits, overlays")
    with pytest.raises(InputError, match="no report section given; choose from: overview"):
        get_sections([" "])
    with pytest.raises(TypeError):
        register(object())  # type: ignore[arg-type]


def test_a_skipped_section_leaves_nothing_and_a_failing_one_keeps_only_its_message(ds, tmp_path):
    def skipped(context, report):
        report.add_text("half drawn")
        raise SkipSection("nothing here")

    def failing(context, report):
        report.add_table([["partial"]])
        raise InputError("mask.png: cannot read\nsecond line")

    parts = [FunctionSection("a", "Skipped", skipped), FunctionSection("b", "Broken", failing),
             *get_sections(["overview"])]
    report, problems = build_report(ReportContext(DSFolder.open(ds), html=tmp_path / "r.html"), parts, "t")
    html = report.write(tmp_path / "r.html").read_text(encoding="utf-8")
    assert _h2(html) == ["Broken", "Overview"]
    assert "half drawn" not in html and "partial" not in html
    assert "This section could not be drawn: mask.png: cannot read</p>" in html
    assert [(p.name, p.message) for p in problems] == [("b", "mask.png: cannot read")]


# -- each data section -------------------------------------------------------------------------------------


def test_overview_numbers_match_the_folder(ds, tmp_path):
    folder = DSFolder.open(ds)
    html, _, problems = _page(folder, tmp_path, ["overview"])
    assert not problems
    good = sum(1 for s in folder if s.is_good)
    classes = sum(len(m.defects) for m in folder.objects.values())
    assert _metrics(html) == {"objects": "2", "defect classes": str(classes), "samples": str(len(folder)),
                              "marked good": str(good), "no split": str(len(folder)), "captioned": "0"}
    rows = _table(html, "object", "defect classes")
    assert rows == [[name, ", ".join(folder.objects[name].defects), str(len(folder.samples(object=name))),
                     str(sum(1 for s in folder.samples(object=name) if s.is_good))] for name in folder.objects]


def test_overview_shows_split_counts_once_assigned(ds_copy, tmp_path):
    folder = DSFolder.open(ds_copy)
    counts = assign_splits(folder, rule="first-k", k=1)
    html, _, _ = _page(folder, tmp_path, ["overview"])
    assert _metrics(html)["train / val"] == f"{counts['train']} / {counts['val']}"
    assert "no split" not in _metrics(html)


def test_statistics_rows_match_compute_stats(ds, tmp_path):
    folder = DSFolder.open(ds)
    stats = compute_stats(folder).to_json()
    html, page, problems = _page(folder, tmp_path, ["stats"])
    assert not problems
    classes = _table(html, "object", "class")
    assert [row[:4] for row in classes] == [[name, c["name"], str(c["images"]), str(c["regions"])]
                                            for name, obj in stats["objects"].items() for c in obj["classes"]]
    objects = _table(html, "object", "image size")
    assert [row[:5] for row in objects] == [[name, str(o["samples"]), str(o["defective"]), str(o["defect_free"]),
                                             str(o["splits"]["unassigned"])] for name, o in stats["objects"].items()]
    assert "report_files/stats.png" in _images_exist(html, page)


def test_statistics_from_a_file_are_shown_as_given_and_flagged_when_stale(ds, tmp_path):
    folder = DSFolder.open(ds)
    stats = compute_stats(folder).to_json()
    stats["objects"]["metal"]["classes"][0]["regions"] = 987654
    stats["samples"] = len(folder) + 3
    html, _, _ = _page(folder, tmp_path, ["stats"], stats=check_stats_json(stats, "stats.json"))
    assert "987,654" in html
    assert f"covers {len(folder) + 3} samples but the folder now has {len(folder)}" in html


@pytest.mark.parametrize("mangle, complaint", [
    (lambda s: s.pop("objects"), "no 'objects' mapping"),
    (lambda s: s["objects"]["metal"].__setitem__("samples", "many"), "'samples' is not a count"),
    (lambda s: s["objects"]["metal"]["classes"][0].__setitem__("area_pct", [1, 2]), "not a set of finite percentiles"),
    (lambda s: s["objects"]["wood"].__setitem__("image_sizes", [{"height": 1}]), "'image_sizes'"),
    (lambda s: s["objects"]["wood"]["classes"][0].__setitem__("index", 10**9), "index 1000000000 is not 1..255"),
    (lambda s: s["objects"]["wood"]["classes"][0].__setitem__(
        "area_px", {"p5": 1, "p25": 2, "p50": float("nan"), "p75": 4, "p95": 5}), "finite percentiles"),
])
def test_a_wrong_statistics_file_is_one_line(ds, mangle, complaint):
    stats = compute_stats(DSFolder.open(ds)).to_json()
    mangle(stats)
    with pytest.raises(InputError, match=complaint) as caught:
        check_stats_json(stats, "my_stats.json")
    assert str(caught.value).startswith("my_stats.json: not a statistics file") and "\n" not in str(caught.value)


def test_statistics_of_very_many_classes_are_listed_but_not_plotted(ds, tmp_path):
    classes = [{"index": i, "name": f"c{i}", "images": 1, "regions": 1, "area_px": None, "area_pct": None}
               for i in range(1, 152)]
    obj = {"samples": 1, "defective": 1, "defect_free": 0, "splits": {}, "image_sizes": [], "classes": classes}
    stats = check_stats_json({"objects": {"a": obj, "b": obj}}, "stats.json")
    html, _, problems = _page(DSFolder.open(ds), tmp_path, ["stats"], stats=stats)
    assert not problems and "302 classes are too many to plot" in html and "<img" not in html
    assert len(_table(html, "object", "class")) == 302


def test_validation_section_computes_or_reads_a_report(ds, tmp_path):
    folder = DSFolder.open(ds)
    html, _, _ = _page(folder, tmp_path, ["validation"])
    assert f"OK. {len(folder)} samples checked: 0 error(s), 0 warning(s)." in html
    # a saved report with issues: shown as saved, issues listed
    saved = validate(folder).to_json()
    saved["issues"] = [{"level": "error", "code": "mask-unreadable", "sample": f"metal/s{i}", "file": None,
                        "message": f"mask {i} <broken>"} for i in range(12)]
    write_json_atomic(tmp_path / "validation.json", saved)
    html, _, _ = _page(folder, tmp_path, ["validation"], validation=load_validation(tmp_path / "validation.json"))
    assert "FAILED. " in html and "12 error(s)" in html
    assert _table(html, "issue", "count") == [["mask-unreadable", "error", "12"]]
    listed = _table(html, "level", "message")
    assert len(listed) == 10 and listed[0] == ["error", "mask-unreadable", "metal/s0", "mask 0 <broken>"]
    assert "First 10 of 12 issues" in html


def test_a_wrong_validation_file_is_one_line(ds, tmp_path):
    write_json_atomic(tmp_path / "stats.json", compute_stats(DSFolder.open(ds)).to_json())
    with pytest.raises(InputError, match=r"stats.json: not a validation report \(no 'summary' mapping\)"):
        load_validation(tmp_path / "stats.json")
    saved = validate(DSFolder.open(ds)).to_json()
    saved["issues"] = [{"level": "error", "code": 5, "message": "x"}]
    write_json_atomic(tmp_path / "v.json", saved)
    with pytest.raises(InputError, match="issue 1 lacks"):
        load_validation(tmp_path / "v.json")


def test_splits_section_without_and_with_splits(ds_copy, tmp_path):
    folder = DSFolder.open(ds_copy)
    html, _, problems = _page(folder, tmp_path, ["splits"])
    assert not problems and "No sample has a split yet" in html and "<table>" not in html
    assign_splits(folder, rule="first-k", k=1)
    html, _, _ = _page(folder, tmp_path, ["splits"])
    rows = _table(html, "object", "total")
    expected = [[name, str(len(folder.samples(name, "train"))), str(len(folder.samples(name, "val"))),
                 str(len(folder.samples(name)))] for name in folder.objects]
    assert rows == [*expected, ["all", str(len(folder.samples(split="train"))),
                                str(len(folder.samples(split="val"))), str(len(folder))]]
    per_type = _table(html, "object", "defect type train/val")
    assert per_type[0][0] == "metal" and "combined 1/1" in per_type[0][1] and "good 1/1" in per_type[0][1]


def test_overlays_section_draws_into_the_report_assets(ds_copy, tmp_path):
    folder = DSFolder.open(ds_copy)
    html, page, problems = _page(folder, tmp_path, ["overlays"])
    assert not problems
    srcs = _images_exist(html, page)
    assert "report_files/overlays/contact_sheet.png" in srcs
    assert len(srcs) == 1 + 9  # the contact sheet and a gallery of 9 of the drawn overlays
    defective = [s for s in folder if not s.is_good]
    assert len(list((page.parent / "report_files" / "overlays").glob("*__*.png"))) == min(24, len(defective))
    assert ">Examples</h3>" in html and "every defect type of every object" in html
    # with captions, each gallery picture is captioned with its sample's caption
    caption_folder(folder)
    folder.save()
    html, _, _ = _page(folder, tmp_path, ["overlays"], limit=3)
    assert ">Examples with captions</h3>" in html and "3 of " in html
    captions = [html_lib.unescape(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", html)]
    for sample in folder:
        if f"{sample.id}: {sample.caption}" in captions:
            break
    else:
        raise AssertionError(captions)


def test_sections_on_a_folder_with_nothing_to_show(tmp_path):
    empty = DSFolder.create(tmp_path / "empty", "empty", {"bolt": ["rust"]})
    empty.save()
    html, _, problems = _page(DSFolder.open(tmp_path / "empty"), tmp_path, DATA_SECTIONS)
    assert not problems and _h2(html) == TITLES
    assert "No defective samples to draw." in html and "The folder has no samples." in html
    assert _metrics(html)["samples"] == "0"


def test_a_defect_free_only_folder_draws_no_overlays(ds_copy, tmp_path):
    folder = DSFolder.open(ds_copy)
    folder.update(s.replace(defect_type="good") for s in list(folder))
    html, _, problems = _page(folder, tmp_path, ["overlays"])
    assert not problems and "No defective samples to draw." in html and "<img" not in html


def test_an_unreadable_mask_fails_its_sections_only(ds_copy, tmp_path):
    folder = DSFolder.open(ds_copy)
    first = next(s for s in folder if not s.is_good)
    folder.mask_path(first).write_bytes(b"not a png")
    written = write_ds_report(ds_copy, tmp_path / "out" / "report.html")
    html = written.html.read_text(encoding="utf-8")
    assert _h2(html) == TITLES
    assert [p.name for p in written.problems] == ["overlays"]
    assert "This section could not be drawn" in html and "FAILED." in html
    assert "1 mask(s) could not be read" in html


# -- the command -------------------------------------------------------------------------------------------


def test_report_command_writes_the_default_report_beside_the_folder(ds_copy):
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(ds_copy)])
    assert result.exit_code == 0, result.output
    page = ds_copy.parent / "ds_report" / "report.html"
    assert default_out(ds_copy) == page
    assert result.stdout.strip() == f"wrote {page} (overview, validation, stats, splits, overlays)"
    html = page.read_text(encoding="utf-8")
    assert _h2(html) == TITLES and (page.parent / MARKER).is_file()
    assert len(_images_exist(html, page)) >= 5
    assert not list(ds_copy.rglob("*report*"))  # nothing written into the DS folder
    # a second run replaces its own report folder
    result = runner.invoke(app, ["report", str(ds_copy), "--sections", "overview"])
    assert result.exit_code == 0, result.output
    assert _h2(page.read_text(encoding="utf-8")) == ["Overview"]
    assert not (page.parent / "report_files").exists()


def test_report_command_refuses_the_ds_folder_and_other_folders(ds_copy, tmp_path):
    before = sorted(p.relative_to(ds_copy) for p in ds_copy.rglob("*"))
    runner = CliRunner()
    for out in (ds_copy / "report.html", ds_copy / "object" / "report.html", ds_copy, tmp_path / "report.html"):
        result = runner.invoke(app, ["report", str(ds_copy), "--out", str(out)])
        assert result.exit_code == 2, (out, result.output)
        assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: ")
    assert sorted(p.relative_to(ds_copy) for p in ds_copy.rglob("*")) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["report", str(ds_copy), "--out", str(mine / "report.html")])
    assert result.exit_code == 2 and "is not a report folder" in result.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    result = runner.invoke(app, ["report", str(ds_copy), "--out", str(tmp_path / "r" / "report.txt")])
    assert result.exit_code == 2 and "an .html file" in result.output
    assert not (tmp_path / "r").exists()


def test_report_command_options(ds_copy, tmp_path):
    runner = CliRunner()
    stats_file = tmp_path / "stats.json"
    stats = compute_stats(DSFolder.open(ds_copy)).to_json()
    stats["objects"]["wood"]["classes"][0]["images"] = 4321
    write_json_atomic(stats_file, stats)
    out = tmp_path / "reports"  # a folder: report.html goes inside
    result = runner.invoke(app, ["report", str(ds_copy), "--sections", "stats,overview", "--stats", str(stats_file),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text(encoding="utf-8")
    assert _h2(html) == ["Overview", "Statistics"] and "4,321" in html
    result = runner.invoke(app, ["report", str(ds_copy), "--sections", "overview,charts", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: unknown report section(s) 'charts'; choose from: "
                                     "overview, validation, stats, splits, overlays")
    result = runner.invoke(app, ["report", str(ds_copy), "--validation", str(stats_file), "--out", str(out)])
    assert result.exit_code == 2 and "not a validation report" in result.output
    assert _h2((out / "report.html").read_text(encoding="utf-8")) == ["Overview", "Statistics"]  # left as it was
    result = runner.invoke(app, ["report", str(ds_copy), "--limit", "2", "--sections", "overlays", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_json(out / "report_files" / "overlays" / "show.json")["overlays"].__len__() == 2


def test_report_command_warns_about_a_section_it_could_not_draw(ds_copy, tmp_path):
    folder = DSFolder.open(ds_copy)
    folder.mask_path(next(s for s in folder if not s.is_good)).write_bytes(b"")
    result = CliRunner().invoke(app, ["report", str(ds_copy), "--sections", "overlays", "--out",
                                      str(tmp_path / "o" / "r.html")])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: section overlays: ") and len(result.stderr.splitlines()) == 1
    assert (tmp_path / "o" / "r.html").is_file()


def test_report_help_has_an_example():
    result = CliRunner().invoke(app, ["report", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "defectspectrum report ds_mvtec" in result.output


def test_a_linked_ds_folder_gets_its_report_beside_the_link_never_inside(ds_copy, tmp_path):
    link = tmp_path / "linked"
    link.symlink_to(ds_copy, target_is_directory=True)
    assert default_out(link) == tmp_path / "linked_report" / "report.html"
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(link), "--out", str(link / "r.html"), "--sections", "overview"])
    assert result.exit_code == 2 and "is the DS folder" in result.output
    alias = tmp_path / "alias_out"
    alias.symlink_to(ds_copy / "metal", target_is_directory=True)
    result = runner.invoke(app, ["report", str(ds_copy), "--out", str(alias / "r.html"), "--sections", "overview"])
    assert result.exit_code == 2 and "is inside the DS folder" in result.output
    result = runner.invoke(app, ["report", str(link), "--sections", "overview"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "linked_report" / "report.html").is_file()
