"""A small HTML report builder: headings, text, tables, images and matplotlib figures in one folder.

```python
report = Report("Data check")
report.add_heading("Statistics")
report.add_table(rows, header=["object", "class", "images"])
report.add_figure(fig, "stats", "Images per class")
report.write(Path("out/report.html"))   # out/report.html + out/report_files/*.png
```

The page is self-contained: inline CSS, no scripts, fonts or anything else from the network. Images
that already lie in the report's folder are linked relatively; others are copied into
`<stem>_files/` beside the HTML. Every write is atomic.
"""

from __future__ import annotations

import html
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from defectspectrum.errors import InputError
from defectspectrum.io import (
    atomic_path,
    copy_file_atomic,
    image_size,
    write_text_atomic,
)

_KINDS = ("note", "ok", "warn", "error")
_SLUG = re.compile(r"[^a-z0-9]+")
_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CODE = re.compile(r"`([^`\n]+)`")
WRAP_AT = 60  # table cells longer than this (characters) make their column wrap


@dataclass
class _Image:
    source: Path | None  # an image file, or None for rendered figure bytes
    data: bytes | None
    name: str
    caption: str | None


class Report:
    """An HTML report assembled block by block and written as one folder (see the module docstring)."""

    def __init__(self, title: str, subtitle: str | None = None) -> None:
        self.title = title
        self.subtitle = subtitle
        self._blocks: list[tuple[str, Any]] = []
        self._headings: list[tuple[int, str, str]] = []

    # -- blocks ------------------------------------------------------------------------------------

    def add_heading(self, text: str, level: int = 2) -> None:
        """A section heading (level 2 headings make the table of contents)."""
        if level not in (2, 3, 4):
            raise InputError(f"add_heading: level must be 2, 3 or 4, got {level}")
        slug = _SLUG.sub("-", text.lower()).strip("-") or "section"
        taken = {anchor for _, _, anchor in self._headings}
        anchor, n = slug, 1
        while anchor in taken:
            n += 1
            anchor = f"{slug}-{n}"
        self._headings.append((level, text, anchor))
        self._blocks.append(("heading", (level, text, anchor)))

    def add_text(self, text: str, kind: str | None = None) -> None:
        """One or more paragraphs (split at blank lines; `backticks` mark code); `kind` note/ok/warn/error draws
        a call-out box."""
        if kind is not None and kind not in _KINDS:
            raise InputError(f"add_text: kind must be one of {', '.join(_KINDS)} or None, got {kind!r}")
        self._blocks.append(("text", (text, kind)))

    def add_list(self, items: Iterable[str]) -> None:
        """A bulleted list."""
        self._blocks.append(("list", [str(item) for item in items]))

    def add_metrics(self, metrics: Mapping[str, Any]) -> None:
        """A row of headline numbers, each a large value over its label."""
        self._blocks.append(("metrics", dict(metrics)))

    def add_table(self, rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None,
                  caption: str | None = None) -> None:
        """A table; numbers are formatted and right-aligned, None shows as a dash."""
        rows = [list(row) for row in rows]
        width = len(header) if header is not None else max((len(r) for r in rows), default=0)
        for i, row in enumerate(rows):
            if len(row) != width:
                raise InputError(f"add_table: row {i} has {len(row)} cells but the table has {width} columns")
        self._blocks.append(("table", (rows, list(header) if header is not None else None, caption)))

    def add_image(self, path: Path, caption: str | None = None) -> None:
        """An image file (PNG/JPEG/...), shown at its natural size or narrower."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: image not found; write it before adding it to the report")
        self._blocks.append(("image", _Image(path, None, path.name, caption)))

    def add_gallery(self, items: Iterable[tuple[Path, str | None]]) -> None:
        """Several images in a responsive grid, each with its caption."""
        images = []
        for path, caption in items:
            path = Path(path)
            if not path.is_file():
                raise InputError(f"{path}: image not found; write it before adding it to the report")
            images.append(_Image(path, None, path.name, caption))
        self._blocks.append(("gallery", images))

    def add_figure(self, figure: Any, name: str, caption: str | None = None, dpi: int = 110) -> None:
        """A matplotlib figure, rendered now to PNG (saved as `<name>.png` beside the report on write)."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
        file_name = (_FILE_UNSAFE.sub("_", name).strip("._") or "figure") + ".png"
        self._blocks.append(("image", _Image(None, buffer.getvalue(), file_name, caption)))

    def mark(self) -> tuple[int, int]:
        """A position in the report to `rollback` to (drop what a failed section added)."""
        return len(self._blocks), len(self._headings)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Remove every block and heading added since `mark`."""
        del self._blocks[mark[0]:]
        del self._headings[mark[1]:]

    # -- writing -----------------------------------------------------------------------------------

    def write(self, path: Path) -> Path:
        """Write the HTML to `path` and its assets to `<stem>_files/`; returns `path`."""
        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            raise InputError(f"{path}: a report file must end in .html; choose e.g. {path.with_suffix('.html').name}")
        folder = path.parent.resolve()
        assets = folder / f"{path.stem}_files"
        placed: dict[int, str] = {}
        used: set[str] = set()
        for image in self._images():
            placed[id(image)] = self._place(image, folder, assets, used)
        write_text_atomic(path, self._render(placed))
        return path

    def _images(self) -> Iterable[_Image]:
        for kind, payload in self._blocks:
            if kind == "image":
                yield payload
            elif kind == "gallery":
                yield from payload

    @staticmethod
    def _place(image: _Image, folder: Path, assets: Path, used: set[str]) -> str:
        """Copy or render one image where the page can reach it; returns its relative URL."""
        if image.source is not None:
            source = image.source.resolve()
            if not source.is_file():
                raise InputError(f"{image.source}: image disappeared before the report was written; re-create it")
            if folder in source.parents:
                return _url(source, folder)
        stem, suffix = os.path.splitext(image.name)
        name, n = image.name, 1
        while name.lower() in used:
            n += 1
            name = f"{stem}-{n}{suffix}"
        used.add(name.lower())
        target = assets / name
        if image.source is not None:
            copy_file_atomic(image.source, target)
        else:
            with atomic_path(target) as tmp:
                tmp.write_bytes(image.data or b"")
        return _url(target, folder)

    def _render(self, placed: dict[int, str]) -> str:
        parts = []
        for kind, payload in self._blocks:
            if kind == "heading":
                level, text, anchor = payload
                parts.append(f'<h{level} id="{anchor}">{_e(text)}</h{level}>')
            elif kind == "text":
                text, style = payload
                paragraphs = "".join(f"<p>{_inline(p.strip())}</p>" for p in re.split(r"\n\s*\n", text) if p.strip())
                parts.append(f'<div class="callout {style}">{paragraphs}</div>' if style else paragraphs)
            elif kind == "list":
                parts.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in payload) + "</ul>")
            elif kind == "metrics":
                cards = "".join(f'<div class="metric"><div class="value">{_e(_fmt(v))}</div>'
                                f'<div class="label">{_e(k)}</div></div>' for k, v in payload.items())
                parts.append(f'<div class="metrics">{cards}</div>')
            elif kind == "table":
                parts.append(_table(*payload))
            elif kind == "image":
                parts.append(_figure(payload, placed[id(payload)]))
            elif kind == "gallery":
                parts.append('<div class="gallery">' + "".join(_figure(i, placed[id(i)]) for i in payload) + "</div>")
        toc = [(text, anchor) for level, text, anchor in self._headings if level == 2]
        nav = ""
        if len(toc) >= 3:
            nav = '<nav class="toc"><span>Contents</span>' + "".join(
                f'<a href="#{anchor}">{_e(text)}</a>' for text, anchor in toc) + "</nav>"
        from defectspectrum import __version__

        stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
        subtitle = f'<p class="subtitle">{_e(self.subtitle)}</p>' if self.subtitle else ""
        return _PAGE.format(
            title=_e(self.title), subtitle=subtitle, nav=nav, css=_CSS, body="\n".join(parts),
            footer=_e(f"Generated by defectspectrum {__version__} on {stamp}"),
        )


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _inline(text: str) -> str:
    """Escaped text in which `backticks` mark code (commands, file names)."""
    return _CODE.sub(r"<code>\1</code>", _e(text))


def _url(target: Path, folder: Path) -> str:
    return quote(Path(os.path.relpath(target, folder)).as_posix())


def _fmt(value: Any) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "\u2014"
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.4g}" if abs(value) < 1e3 else f"{value:,.0f}"  # 6,476 like the whole 1,509 beside it
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(rows: list[list[Any]], header: list[str] | None, caption: str | None) -> str:
    """Numeric columns align right; columns with long text wrap instead of widening the table."""
    columns = len(rows[0]) if rows else 0
    kinds = []
    for i in range(columns):
        if all(_is_number(r[i]) or r[i] is None for r in rows):
            kinds.append(" class=num")
        elif any(len(_fmt(r[i])) > WRAP_AT for r in rows):
            kinds.append(" class=wrap")
        else:
            kinds.append("")
    out = ['<div class="table-wrap"><table>']
    if caption:
        out.append(f"<caption>{_e(caption)}</caption>")
    if header is not None:
        cells = "".join(f'<th{kinds[i] if i < columns else ""}>{_e(h)}</th>' for i, h in enumerate(header))
        out.append(f"<thead><tr>{cells}</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = "".join(f"<td{kinds[i]}>{_e(_fmt(v))}</td>" for i, v in enumerate(row))
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _figure(image: _Image, url: str) -> str:
    size = ""
    if image.source is not None:
        try:
            height, width = image_size(image.source)
            size = f' width="{width}" height="{height}"'
        except InputError:
            size = ""
    alt = image.caption or image.name
    caption = f"<figcaption>{_e(image.caption)}</figcaption>" if image.caption else ""
    img = f'<img src="{_e(url)}" alt="{_e(alt)}"{size} loading="lazy">'
    return f'<figure><a href="{_e(url)}">{img}</a>{caption}</figure>'


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="defectspectrum">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><h1>{title}</h1>{subtitle}</header>
{nav}
<main>
{body}
</main>
<footer>{footer}</footer>
</body>
</html>
"""

_CSS = """
:root { --ink: #1d2430; --muted: #5b6677; --line: #dde2ea; --soft: #f5f7fa; --accent: #0b6bcb; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5; font-size: 15px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans",
  "DejaVu Sans", sans-serif; }
header, nav.toc, main, footer { max-width: 1120px; margin: 0 auto; padding: 0 28px; }
header { padding-top: 32px; padding-bottom: 8px; }
h1 { font-size: 28px; margin: 0 0 4px; letter-spacing: -0.01em; }
.subtitle { margin: 0; color: var(--muted); }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px 18px; padding-top: 10px; padding-bottom: 14px;
  border-bottom: 1px solid var(--line); font-size: 14px; }
nav.toc span { color: var(--muted); font-weight: 600; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 17px; margin: 24px 0 8px; }
h4 { font-size: 15px; margin: 18px 0 6px; }
p { margin: 8px 0; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 0.9em;
  background: #eef1f5; border-radius: 3px; padding: 1px 4px; }
ul { margin: 8px 0; padding-left: 22px; }
.callout { border-left: 4px solid #8a96a8; background: var(--soft); padding: 6px 14px; margin: 12px 0;
  border-radius: 0 6px 6px 0; }
.callout.ok { border-color: #1a8a4a; background: #eef8f1; }
.callout.warn { border-color: #c98a00; background: #fdf6e6; }
.callout.error { border-color: #c62828; background: #fdeeee; }
.metrics { display: grid; grid-template-columns: repeat(auto-fit, minmax(128px, 1fr)); gap: 12px; margin: 14px 0; }
.metric { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; background: var(--soft); }
.metric .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.metric .label { color: var(--muted); font-size: 13px; }
.table-wrap { overflow-x: auto; margin: 12px 0; }
table { border-collapse: collapse; font-size: 13.5px; min-width: 50%; }
caption { text-align: left; color: var(--muted); padding-bottom: 6px; caption-side: top; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; border-bottom: 2px solid var(--line); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; min-width: 24em; overflow-wrap: anywhere; }
tbody tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 16px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 18px; }
.gallery figure { margin: 0; }
.gallery img { width: 100%; }
footer { color: var(--muted); font-size: 12px; padding-top: 28px; padding-bottom: 28px; margin-top: 28px;
  border-top: 1px solid var(--line); }
"""
