"""Paths that stay inside their folder: the one sanitiser for every name a writer puts on disk, and
the one check for every relative path read from an index (a DS folder's `samples.jsonl`, an
export's own index) before it is opened.

- `safe_name(text)`: one file-name component made of letters, digits, `.`, `_` and `-`; never
  empty, never `.`/`..`, never hidden, at most `MAX_NAME` characters (a long name keeps a short
  hash of the whole, so two long names stay apart).
- `unique_name(base, taken)` / `apart_ignoring_case(names)`: names made distinct ignoring case
  (`Train` beside `train` becomes `Train-2`), for writers whose names come from data.
- `output_path(root, *parts)`: `root/part/part/...` with every part checked to be a safe name,
  for writers (exports, DS folders): nothing they build can climb out of `root`.
- `relative_path(text, where)` (`check_relative` without the Path object): a relative, forward-slash
  path from an index, refused when it is absolute, has a drive, a backslash, an empty, `.` or `..`
  part, or a NUL.
- `Containment(root)`: whether such a path, once symbolic links are followed, still lies inside
  `root` (one directory listing per folder, not one system call per file).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from defectspectrum.errors import InputError

MAX_NAME = 160  # characters of a safe name; suffixes and `-2` counters still fit in 255 bytes
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_name(name: str) -> str:
    """A file-system-safe version of `name`: letters, digits, `.`, `_`, `-` (runs of anything else
    become one `_`), no leading/trailing `.`/`_`, never empty (`unnamed`), at most MAX_NAME long."""
    cleaned = _UNSAFE.sub("_", str(name)).strip("._") or "unnamed"
    if len(cleaned) > MAX_NAME:
        digest = hashlib.sha1(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:10]
        cleaned = f"{cleaned[: MAX_NAME - 11].rstrip('._')}-{digest}"
    return cleaned


def is_safe_name(name: object) -> bool:
    """True where `name` is a string that `safe_name` leaves as it is."""
    return isinstance(name, str) and safe_name(name) == name


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`, ...: the first whose lower-case form is not in `taken` (which
    records it), so that names stay apart also on case-insensitive file systems (Windows, macOS). A
    safe `base` gives a safe name, also at full length (`safe_name` shortens `base-N` with a hash)."""
    candidate, counter = base, 1
    while candidate.lower() in taken:
        counter += 1
        candidate = safe_name(f"{base}-{counter}")
    taken.add(candidate.lower())
    return candidate


def apart_ignoring_case(names: Iterable[str]) -> dict[str, str]:
    """Each distinct name -> itself, or, where it equals an earlier name but for case, `name-2`,
    `name-3`, ... (`unique_name`): folder and file names that stay apart on case-insensitive file
    systems (Windows, macOS), where `Train/` and `train/` are one folder."""
    chosen: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        if name not in chosen:
            chosen[name] = unique_name(name, taken)
    return chosen


def output_path(root: Path, *parts: str) -> Path:
    """`root` joined with `parts`, each of which must be a safe name (InputError otherwise): the path
    every writer builds its files with, so that no name taken from data can leave `root`."""
    for part in parts:
        if not is_safe_name(part):
            raise InputError(f"{root}: refusing to write {part!r}: a file or folder name must be letters, digits, "
                             "'.', '_' or '-' (pass it through safe_name)")
    return Path(root).joinpath(*parts)


def relative_path(text: object, where: str) -> PurePosixPath:
    """`text` as a relative path that cannot leave its folder, or InputError naming `where`.

    Refused: non-strings, empty paths, absolute paths, drive letters, backslashes, NUL, and empty,
    `.` or `..` parts. Forward slashes separate parts on every platform.
    """
    return PurePosixPath(check_relative(text, where))


def check_relative(text: object, where: str) -> str:
    """`text` itself where `relative_path` accepts it (cheaper where no Path object is needed)."""
    if not isinstance(text, str) or not text:
        raise InputError(f"{where}: path {text!r} must be a non-empty string")
    problem = None
    if "\x00" in text:
        problem = "contains a NUL character"
    elif text.startswith("/") or _DRIVE.match(text):
        problem = "is absolute"
    elif "\\" in text:
        problem = "contains a backslash (use '/')"
    elif any(part in ("", ".", "..") for part in text.split("/")):
        problem = "has an empty, '.' or '..' part"
    if problem is not None:
        raise InputError(f"{where}: path {text!r} {problem}; paths must be relative to the folder and stay inside it")
    return text


class Containment:
    """Answers whether relative paths under `root` stay inside it once symbolic links are followed.

    A path is resolved only where one of its parts is a symbolic link; which entries are links is
    learnt from one listing of each folder, cached, so checking a million index entries costs a
    listing of their folders rather than a million system calls.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._real_root = Path(os.path.realpath(self.root))
        self._links: dict[str, frozenset[str]] = {}

    def _symlinks_in(self, folder: str) -> frozenset[str]:
        if folder not in self._links:
            try:
                with os.scandir(self.root / folder if folder else self.root) as entries:
                    self._links[folder] = frozenset(e.name for e in entries if e.is_symlink())
            except OSError:  # missing or unreadable folder: nothing to follow (the file check reports it)
                self._links[folder] = frozenset()
        return self._links[folder]

    def inside(self, relative: PurePosixPath | str) -> bool:
        """True where `root/relative` resolves to a path inside `root` (missing files count as inside:
        they cannot lead anywhere). A string must be a path `check_relative` accepted."""
        parts = relative.split("/") if isinstance(relative, str) else relative.parts
        folder = ""
        for part in parts:
            if part in self._symlinks_in(folder):
                real = Path(os.path.realpath(self.root / relative))
                return real == self._real_root or self._real_root in real.parents
            folder = f"{folder}/{part}" if folder else part
        return True

    def check(self, relative: PurePosixPath | str, where: str) -> None:
        """InputError naming `where` unless `relative` stays inside the root."""
        if not self.inside(relative):
            text = relative if isinstance(relative, str) else relative.as_posix()
            raise InputError(f"{where}: path {text!r} leads outside {self.root} through a "
                             "symbolic link; replace the link with the file itself")


def require_apart(source: Path, out: Path, fix: str = "choose another output folder") -> None:
    """InputError unless the output folder `out` is neither `source`, nor inside it, nor holding it
    (links resolved): an output must never be written into what it is made from."""
    src, dst = Path(source).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents:
        raise InputError(f"{out}: the output folder must lie outside the source {source}; {fix}")
    if dst in src.parents:
        raise InputError(f"{out}: the output folder must not contain the source {source}; {fix}")
