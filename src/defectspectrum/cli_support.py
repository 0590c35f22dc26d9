"""What every CLI sub-app shares: the consoles, the one-line error wrapper, safe printing and option parsers.

Errors a user can fix become one line `error: <message>` on stderr and exit code 2: the toolkit's
own errors (their message names the file and the fix), every OSError (the message is built from
the exception's file name and a fix per errno) and text that is not UTF-8 or not JSON. Anything
else (TypeError, KeyError, ...) is a bug and keeps its traceback.

User-derived text (paths, names, messages quoting them) is never parsed as rich markup: it is
printed through `say`/`print_error` as plain `Text`, with control characters and undecodable
bytes shown as escapes, so `[/]` in a path neither crashes nor disappears.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import os
import unicodedata
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from defectspectrum.errors import DefectSpectrumError, InputError

F = TypeVar("F", bound=Callable[..., Any])

out = Console()
err = Console(stderr=True)

# errno -> (what happened, how to fix it); the message reads "<file>: <what>; <fix>"
_OS_FIXES: dict[int, tuple[str, str]] = {getattr(errno, name): (what, how) for name, what, how in (
    ("EACCES", "permission denied", "check its permissions"),
    ("EPERM", "operation not permitted", "check its permissions and attributes (chattr)"),
    ("EROFS", "read-only file system", "write to a writable location"),
    ("ENOSPC", "no space left on the device", "free some space or write elsewhere"),
    ("EDQUOT", "disk quota exceeded", "free some space or write elsewhere"),
    ("EFBIG", "file too large for the file system", "write elsewhere"),
    ("ENAMETOOLONG", "file name too long", "use a shorter name or path"),
    ("EISDIR", "is a folder", "give a file path"),
    ("ENOTDIR", "a part of the path is not a folder", "check the path"),
    ("EEXIST", "already exists", "choose a new name or remove it"),  # see _os_error_message for a non-folder
    ("ENOTEMPTY", "folder is not empty", "choose a new or empty folder"),
    ("ENOENT", "not found", "check the path"),
    ("ELOOP", "too many levels of symbolic links", "fix the link (it may point to itself)"),
    ("EMFILE", "too many open files", "raise the limit (ulimit -n) or use fewer --workers"),
    ("ENFILE", "too many open files in the system", "close other programs or use fewer --workers"),
    ("EIO", "input/output error", "check the disk or the network share"),
    ("EXDEV", "cannot move across file systems", "write on the same file system"),
    ("EINVAL", "invalid argument (a name this file system does not allow?)", "use another name"),
    ("EBUSY", "device or resource busy", "close what uses it and retry"),
    ("ETXTBSY", "file is busy", "close what uses it and retry"),
) if hasattr(errno, name)}
# for these, a file or folder that does not exist yet could not be created: its folder is what to fix
_CREATE_ERRNOS = {getattr(errno, name) for name in ("EACCES", "EPERM", "EROFS") if hasattr(errno, name)}
# for these a failed rename (`filename` -> `filename2`) is about the target alone
_TARGET_ERRNOS = {errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOTEMPTY}


def printable(value: object) -> str:
    """`value` as text safe to show on one terminal line: control characters (newline, ESC, ...)
    and bytes that were not UTF-8 in a file name (surrogate escapes) become backslash escapes."""
    text = str(value)
    if text.isprintable():
        return text
    parts = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
            parts.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            parts.append(char.encode("unicode_escape").decode("ascii"))
        else:
            parts.append(char)
    return "".join(parts)


def markup_text(value: object) -> str:
    """`value` for a place that rich parses as markup (table cells, titles): `printable`, then markup
    escaped, so that neither `[/]` nor a terminal escape sequence in a name does anything."""
    from rich.markup import escape

    return escape(printable(value))


def _open_file_in_traceback(exc: BaseException) -> str | None:
    """The name of the file that was being read or written where `exc` was raised: an open file
    object in the innermost frame that holds one (for decode errors, which carry no file name)."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            name = getattr(value, "name", None) if isinstance(value, io.IOBase) else None
            if isinstance(name, str) and not name.startswith("<"):  # not <stdout>
                return name
        if frame.f_code.co_name in ("read_text", "read_bytes") and isinstance(frame.f_locals.get("self"), PurePath):
            return str(frame.f_locals["self"])
    return None


def _missing(path: Path) -> bool:
    """True only where `path` certainly does not exist (not where looking at it is refused)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _closed_folder_above(path: Path) -> Path | None:
    """The outermost folder above `path` that this process may not enter (no search permission), if any."""
    for folder in reversed(path.parents):
        if folder.is_dir() and not os.access(folder, os.X_OK):
            return folder
    return None


def _os_error_message(exc: OSError) -> str:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if exc.errno is None and exc.filename is None:  # raised with a message of its own
        return first
    fix = _OS_FIXES.get(exc.errno) if exc.errno is not None else None
    what, how = fix if fix else ((exc.strerror or first).lower(), "check the path")
    if exc.errno == errno.EEXIST and exc.filename is not None and os.path.lexists(exc.filename) \
            and not os.path.isdir(exc.filename):  # mkdir where a file is: a folder was wanted there
        what, how = "exists and is not a folder", "choose another path or move the file away"
        if os.path.islink(exc.filename) and not os.path.exists(exc.filename):
            what, how = "is a symbolic link to a missing path (or a link loop)", "fix or remove the link"
    if exc.filename2 is not None and exc.errno in _TARGET_ERRNOS:
        where = f"{exc.filename2}"
    elif exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    elif exc.filename is not None:
        where = f"{exc.filename}"
        target = Path(os.fsdecode(exc.filename)) if isinstance(exc.filename, (str, bytes)) else None
        if target is not None and exc.errno in _CREATE_ERRNOS:
            blocker = _closed_folder_above(target)
            if blocker is not None:  # a folder on the way cannot be entered: that folder is the one to fix
                return f"{blocker}: {what} (cannot reach {target} inside it); {how}"
            if _missing(target) and target.parent.is_dir():  # creating it failed: its folder is the one to fix
                return f"{target.parent}: cannot create {target.name} in this folder ({what}); {how}"
    else:
        where = _open_file_in_traceback(exc) or ""
    return f"{where}: {what}; {how}" if where else f"{what}; {how}"


def error_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, DefectSpectrumError):
        text = str(exc)
        return text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, OSError):
        return _os_error_message(exc)
    if type(exc) is RuntimeError and isinstance(exc.__context__, OSError) and exc.__context__.errno == errno.ELOOP:
        return _os_error_message(exc.__context__)  # Python 3.11's Path.resolve on a symbolic link loop
    if isinstance(exc, UnicodeDecodeError):
        where = _open_file_in_traceback(exc)
        what = f"not UTF-8 text ({exc.reason}); save it as UTF-8"
        return f"{where}: {what}" if where else f"a file is {what}"
    if isinstance(exc, json.JSONDecodeError):
        where = _open_file_in_traceback(exc)
        what = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; fix the file"
        return f"{where}: {what}" if where else what
    return None


def print_error(message: str) -> None:
    """`error: <message>` in red on stderr, the message printed as it is (no markup), on one line."""
    err.print(Text.assemble(("error:", "bold red"), " ", printable(message)), soft_wrap=True)


def say(*parts: str | tuple[str, str]) -> None:
    """Print one line on stdout: plain strings are shown as they are (never parsed as markup),
    `(text, style)` pairs are styled, e.g. `say(("wrote", "green"), f" {path}")`."""
    out.print(Text.assemble(*(part if isinstance(part, tuple) else printable(part) for part in parts)),
              soft_wrap=True)


def wrote(path: Path | str, detail: str = "") -> None:
    """`wrote <path><detail>` on stdout."""
    say(("wrote", "green"), f" {path}{detail}")


def friendly(command: F) -> F:
    """Turn errors a user can fix (see `error_message`) into one red line and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            message = error_message(exc)
            if message is None:  # a bug: keep the traceback
                raise
            print_error(message)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def require_folder(path: Path, what: str = "the DS folder") -> Path:
    """`path` if it is a folder, else InputError: missing, a file (or other non-folder) given where a
    folder is wanted, or a symbolic link that leads nowhere."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.is_file():
        raise InputError(f"{path}: is a file, not a folder; pass {what}")
    if path.exists():
        raise InputError(f"{path}: is not a folder (a device, pipe or socket); pass {what}")
    if path.is_symlink():
        raise InputError(f"{path}: is a symbolic link to a missing path (or a link loop); fix the link or pass {what}")
    raise InputError(f"{path}: folder not found; check the path")


def check_report_outputs(outputs: list[Path | None], *ds_roots: Path) -> None:
    """Refuse (before any work) report outputs given twice, or that are a folder or one of the files of the
    DS folders at `ds_roots` (their index, images and masks, also via a link); None entries are skipped."""
    from defectspectrum.data.dsfolder import index_files
    from defectspectrum.staging import check_report_path

    given = [path for path in outputs if path is not None]
    resolved = [path.resolve() for path in given]
    if len(set(resolved)) < len(resolved):
        raise InputError(f"{given[0]}: the same file is given for two outputs; name each output differently")
    for root in ds_roots:
        owned = index_files(root)
        for path in given:
            check_report_path(path, root, owned)


def typed_options(ctx: typer.Context, names: set[str] | None = None) -> list[str]:
    """The options (of `names`, parameter names; default all) typed on the command line, as their flags."""
    flags = {param.name: param.opts[0] for param in ctx.command.params if param.opts}
    given = []
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if (names is None or name in names) and source is not None and source.name == "COMMANDLINE":
            given.append(flags.get(name) or f"--{name.replace('_', '-')}")
    return given


def options_given(ctx: typer.Context, allowed: set[str]) -> list[str]:
    """The options typed on the command line other than `allowed` (as --flags), e.g. to refuse them
    beside --resume."""
    return typed_options(ctx, set(ctx.params) - allowed)


def parse_csv(value: str | None) -> list[str] | None:
    """`a, b,c` as ["a", "b", "c"]; None for no value."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def parse_size(value: str, option: str = "--size", smallest: int = 16, largest: int = 8192) -> tuple[int, int]:
    """`N` or `HxW` (also `H,W`) as (height, width), each side in [smallest, largest], else InputError."""
    example = "e.g. 256 or 192x256"
    try:
        parts = [int(p) for p in value.lower().replace("x", ",").split(",")]
    except ValueError:
        raise InputError(f"{option} {value!r}: give a size as N or HxW, {example}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise InputError(f"{option} {value!r}: give a size as N or HxW, {example}")
    if min(parts) < smallest or max(parts) > largest:
        raise InputError(f"{option} {value!r}: each side must be {smallest} to {largest} px, {example}")
    return parts[0], parts[1]


def max_pixels_option() -> Any:
    """The `--max-pixels` option every command that reads images takes (passed on to `io.pixel_limit`)."""
    from defectspectrum.io import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV

    return typer.Option(None, "--max-pixels", min=1,
                        help=f"Refuse images above this many pixels (width x height), read from the header before "
                             f"decoding: a guard against decompression bombs. Default {DEFAULT_MAX_PIXELS} "
                             f"(16384 x 16384), or ${MAX_PIXELS_ENV}.")
