"""Report sections: what each stage adds to `defectspectrum report`, and the registry that orders them.

A section is any object with a `name`, a `title` and `render(context, report)` that adds blocks
to a `Report`. The builder writes the section's heading, then calls `render`; a section with
nothing to show for a folder says so in a line or raises `SkipSection` (then it leaves no trace).

```python
@section("seg", "Segmentation")
def seg_section(context: ReportContext, report: Report) -> None:
    predictions = context.extra.get("seg_predictions")
    if predictions is None:
        raise SkipSection("no predictions")
    report.add_table(...)
```

`SECTIONS` maps names to sections; `SECTION_ORDER` fixes where each stage's section goes (data
sections first), and `section_names()` lists the registered ones in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from defectspectrum.errors import DefectSpectrumError, InputError
from defectspectrum.report.html import Report

if TYPE_CHECKING:
    from defectspectrum.data.dsfolder import DSFolder
    from defectspectrum.data.show import ShowResult
    from defectspectrum.data.validate import ValidationReport

# Where each stage's section goes on the page; sections of other names follow, in registration order.
SECTION_ORDER = ("overview", "validation", "stats", "splits", "overlays", "seg", "qc", "gen", "click")


@dataclass
class ReportContext:
    """What sections read: the DS folder, where the page goes, and results already at hand.

    `validation`, `stats` and `overlays` are filled by whoever already has them (the demo, or
    `--validation`/`--stats` files); a section computes what is missing and stores it here, so
    two sections never compute the same thing twice. Later stages hand their results in `extra`.
    """

    folder: DSFolder
    html: Path  # where the page will be written; sections write their files under `assets`
    limit: int | None = None  # overlays to draw; None: one per (object, defect type), at least MIN_OVERLAYS
    validation: ValidationReport | None = None
    stats: dict[str, Any] | None = None  # compute_stats(...).to_json()
    overlays: ShowResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def assets(self) -> Path:
        """The page's asset folder (`<stem>_files/` beside the HTML, as `Report.write` uses it)."""
        return self.html.parent / f"{self.html.stem}_files"

    def asset_dir(self, name: str) -> Path:
        """A sub-folder of the asset folder for one section's files (created)."""
        from defectspectrum.paths import output_path

        folder = output_path(self.assets, name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


@runtime_checkable
class Section(Protocol):
    """One part of a report: a registry name, a heading, and what it draws."""

    @property
    def name(self) -> str: ...  # the registry and --sections name

    @property
    def title(self) -> str: ...  # the heading the builder writes

    def render(self, context: ReportContext, report: Report) -> None: ...


class SkipSection(Exception):
    """Raised by `render` when a section has nothing to show for this folder: it is left out."""


@dataclass(frozen=True)
class FunctionSection:
    """A section made from a plain function `render(context, report)`."""

    name: str
    title: str
    function: Callable[[ReportContext, Report], None]

    def render(self, context: ReportContext, report: Report) -> None:
        self.function(context, report)


SECTIONS: dict[str, Section] = {}


def register(item: Section) -> Section:
    """Make a section available under its `name` (a later registration of the same name replaces it)."""
    if not isinstance(item, Section):
        raise TypeError(f"{item!r} is not a report section (needs name, title and render)")
    SECTIONS[item.name] = item
    return item


def section(name: str, title: str) -> Callable[[Callable[[ReportContext, Report], None]], Section]:
    """Decorator: register a function `render(context, report)` as the section `name`."""

    def wrap(function: Callable[[ReportContext, Report], None]) -> Section:
        return register(FunctionSection(name, title, function))

    return wrap


def _load_builtin_sections() -> None:
    # Imported for their @section side effect. A stage whose section needs results that only its own
    # commands produce (seg: a run's scores) is not registered; those commands add it themselves.
    from defectspectrum.report import data_sections  # noqa: F401


def section_names() -> list[str]:
    """Every registered section name, in page order (SECTION_ORDER, then the others as registered)."""
    _load_builtin_sections()
    rank = {name: i for i, name in enumerate(SECTION_ORDER)}
    registered = list(SECTIONS)
    return sorted(registered, key=lambda name: (rank.get(name, len(rank)), registered.index(name)))


def get_sections(names: Iterable[str] | None = None) -> list[Section]:
    """The sections called `names` (all when None), in page order; InputError naming the valid ones."""
    known = section_names()
    if names is None:
        return [SECTIONS[name] for name in known]
    wanted = [name.strip() for name in names if name.strip()]
    unknown = [name for name in wanted if name not in SECTIONS]
    if unknown or not wanted:
        what = f"unknown report section(s) {', '.join(map(repr, unknown))}" if unknown else "no report section given"
        raise InputError(f"{what}; choose from: {', '.join(known)}")
    return [SECTIONS[name] for name in known if name in wanted]


@dataclass
class SectionProblem:
    """A section that could not be drawn (the page shows the message under its heading)."""

    name: str
    message: str


def build_report(context: ReportContext, sections: Sequence[Section], title: str,
                 subtitle: str | None = None) -> tuple[Report, list[SectionProblem]]:
    """A `Report` with each section under its heading, in the given order, and the sections that failed.

    A section that raises `SkipSection` is left out; one that raises a toolkit error (an
    unreadable mask, say) keeps its heading with the one-line message, and the others still render.
    """
    report = Report(title, subtitle=subtitle)
    problems: list[SectionProblem] = []
    for item in sections:
        mark = report.mark()
        try:
            report.add_heading(item.title)
            item.render(context, report)
        except SkipSection:
            report.rollback(mark)
        except DefectSpectrumError as exc:
            message = first_line(exc) or type(exc).__name__
            report.rollback(mark)
            report.add_heading(item.title)
            report.add_text(f"This section could not be drawn: {message}", kind="error")
            problems.append(SectionProblem(item.name, message))
    return report, problems


def first_line(value: Any) -> str:
    """The first line of a message (for table cells and call-outs)."""
    text = str(value)
    return text.splitlines()[0] if text else ""

