"""How output folders and files appear on disk: built beside their target, published by one rename
that never replaces anything, one run a target at a time, and what killed runs leave behind
recognised by its owner and cleaned up.

Beside a target `out` a run keeps, only while it runs:

```
.out.lock                      {"defectspectrum": "lock", ...owner}: one run writes `out` at a time
.out.<pid>.<token>.partial/    owner.json + out/ (the folder being built; its rename publishes it)
.out.<pid>.<token>.old/        owner.json + out/ (a replaced folder, during the swap)
```

The owner (pid, host, boot id, process start time) tells a leftover of a killed run from one of a
live run; only leftovers of this naming, with an owner file of ours, are ever removed.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectspectrum.errors import InputError
from defectspectrum.io import read_text

OWNER_FILE = "owner.json"
_TAG = "defectspectrum"


# -- who owns a leftover ---------------------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc, or None where /proc cannot tell."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_alive(pid: int, started: str | None = None) -> bool:
    """True while process `pid` runs (zombies count as ended; with `started`, a reused pid too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return True  # cannot tell: assume it runs
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        if state in ("Z", "X") or (started is not None and start != started):
            return False
    return True


@dataclass(frozen=True)
class Owner:
    """The process that made a lock or staging folder."""

    pid: int
    host: str
    boot: str
    started: str | None
    pid_namespace: str = ""

    @classmethod
    def me(cls) -> Owner:
        stat = _proc_stat(os.getpid())
        return cls(os.getpid(), socket.gethostname(), _boot_id(), stat[1] if stat else None, _pid_namespace())

    @classmethod
    def from_json(cls, data: Any) -> Owner | None:
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        started = data.get("started")
        return cls(data["pid"], str(data.get("host", "")), str(data.get("boot", "")),
                   started if isinstance(started, str) else None, str(data.get("pid_namespace", "")))

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "boot": self.boot, "started": self.started,
                "pid_namespace": self.pid_namespace}

    def alive(self) -> bool | None:
        """True while the owner runs, False once it ended, None where this process cannot tell (another
        host, or another container's pid namespace on this one)."""
        me = Owner.me()
        if self.host != me.host or (self.pid_namespace and me.pid_namespace and self.pid_namespace != me.pid_namespace):
            return None
        if self.boot and me.boot and self.boot != me.boot:
            return False  # the machine rebooted since
        return process_alive(self.pid, self.started)

    def describe(self) -> str:
        return f"pid {self.pid}" + ("" if self.host == socket.gethostname() else f" on host {self.host}")


# -- renaming without replacing --------------------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1  # linux/fs.h
_RENAME_EXCL = 4  # macOS sys/stdio.h


def _libc_function(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


_renameat2 = _libc_function("renameat2") if sys.platform.startswith("linux") else None
_renamex_np = _libc_function("renamex_np") if sys.platform == "darwin" else None


def _native_rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename with the system's own no-replace call; False where there is none (or the file system lacks it)."""
    if os.name == "nt":
        os.rename(src, dst)  # Windows never replaces an existing target
        return True
    if _renameat2 is not None:
        result = _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
    elif _renamex_np is not None:
        result = _renamex_np(os.fsencode(src), os.fsencode(dst), _RENAME_EXCL)
    else:
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP) and not Path(dst).is_relative_to(src):
        return False
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; FileExistsError where `dst` exists, be it even an empty folder.

    Atomic with Linux's renameat2, macOS's renamex_np and on Windows. Elsewhere a file is hard-linked
    (also atomic) and a folder renamed after a check, which the target's lock (see `staged_folder`)
    guards against other runs of this toolkit.
    """
    src, dst = Path(src), Path(dst)
    if _atomic_rename_noreplace(src, dst):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def _atomic_rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename `src` to `dst` atomically without replacing: the system's own call, or for a file a hard
    link (then `src` is removed). False where neither is available; FileExistsError where `dst` exists."""
    if _native_rename_noreplace(src, dst):
        return True
    if src.is_dir() and not src.is_symlink():
        return False
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        return False  # no hard links here
    os.unlink(src)
    return True


# -- names beside the target -------------------------------------------------------------------------------------


def _stem(name: str) -> str:
    """The target's name in hidden names beside it (long names shortened, kept unique by a hash)."""
    if len(name) <= 100:
        return name
    return f"{name[:80]}~{hashlib.sha1(name.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}"


def lock_path(target: Path) -> Path:
    """The lock file that one run writing `target` holds."""
    return target.with_name(f".{_stem(target.name)}.lock")


def _leftover_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(_stem(target.name))}\.(?:lock\.)?(\d+)\.([0-9a-f]{{8}})\.(partial|old|tmp|stale)")


def _read_owner_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_text(path))
    except (OSError, ValueError, RecursionError, InputError):
        return None
    return data if isinstance(data, dict) and _TAG in data else None


def _owner_record(kind: str, target: Path, token: str, **extra: Any) -> dict[str, Any]:
    return {_TAG: kind, "target": target.name, "token": token, **Owner.me().to_json(), **extra}


def _create_exclusive(path: Path, text: str) -> None:
    """Create `path` holding `text`; FileExistsError where it exists. The file appears complete where
    the system renames without replacing or hard-links; elsewhere it is created with O_EXCL and written."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        if _atomic_rename_noreplace(tmp, path):
            return
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    finally:
        tmp.unlink(missing_ok=True)


def _write_owner_file(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, path)


# -- the lock ----------------------------------------------------------------------------------------------------


def _take_lock(target: Path, token: str) -> Path:
    """Create `target`'s lock for this run, taking over one whose owner ended; InputError while another runs."""
    lock = lock_path(target)
    record = json.dumps(_owner_record("lock", target, token))
    for _ in range(10):
        try:
            _create_exclusive(lock, record)
            return lock
        except FileExistsError:
            pass
        holder = _read_owner_file(lock)
        if holder is None:
            try:
                info = lock.stat()
            except FileNotFoundError:
                continue  # it went away meanwhile: try again
            if info.st_size == 0 and time.time() - info.st_mtime < 10:  # being written (O_EXCL fallback)
                raise InputError(f"{target}: another defectspectrum run is starting to write it; wait for it to end "
                                 "or choose another output")
            raise InputError(f"{lock}: is in the way and is not a defectspectrum lock; remove it, or choose "
                             "another output")
        owner = Owner.from_json(holder)
        state = owner.alive() if owner else None
        if state is not False:
            who = owner.describe() if owner else "unknown owner"
            hint = "" if state else f"; if no run is active there, remove {lock}"
            raise InputError(f"{target}: another defectspectrum run ({who}) is writing it; wait for it to end or "
                             f"choose another output{hint}")
        _remove_stale_lock(lock, holder, token)
    raise InputError(f"{target}: could not take the lock {lock} (other runs keep taking it); try again")


def _remove_stale_lock(lock: Path, holder: dict[str, Any], token: str) -> None:
    """Remove a lock whose owner ended, without removing a fresh one that took its place meanwhile."""
    grave = lock.with_name(f"{lock.name}.{os.getpid()}.{token}.stale")
    try:
        os.rename(lock, grave)
    except FileNotFoundError:
        return  # another run removed it first
    if _read_owner_file(grave) == holder:
        grave.unlink(missing_ok=True)
        return
    with suppress(OSError):  # it was a live run's lock: put it back where it was
        rename_noreplace(grave, lock)


def _release_lock(lock: Path, token: str) -> None:
    holder = _read_owner_file(lock)
    if holder is not None and holder.get("token") == token:
        lock.unlink(missing_ok=True)


# -- leftovers of killed runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leftover:
    """Something a run left beside its target, and what cleaning does with it."""

    path: Path
    kind: str  # "staging", "replaced" or "lock"
    action: str  # "remove", "restore" (a replaced folder put back as the target) or "keep"
    reason: str


def named_target(target: Path) -> Path:
    """`target` as an absolute path with `.` and `..` resolved (as written: links are not followed), so
    that the names beside it are beside the folder meant; InputError for a root folder, which has none."""
    path = Path(os.path.abspath(target))
    if not path.name:
        raise InputError(f"{target}: is a root folder, with no folder beside it to build or clean in; "
                         "give a folder below it")
    return path


def find_leftovers(target: Path) -> list[Leftover]:
    """What runs of this toolkit left beside `target`: staging folders, replaced folders and locks,
    each with the action cleaning takes. Only names of our pattern holding an owner file of ours count."""
    target = named_target(target)
    found: list[Leftover] = []
    lock = lock_path(target)
    if lock.is_file() and not lock.is_symlink():
        found.append(_judge_lock(lock, target))
    pattern = _leftover_pattern(target)
    try:
        entries = sorted(target.parent.iterdir())
    except OSError:
        return found
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or entry.is_symlink():
            continue
        pid, kind = int(match.group(1)), match.group(3)
        if kind in ("partial", "old") and entry.is_dir():
            item = _judge_folder(entry, target, pid, kind)
        elif kind in ("tmp", "stale") and entry.is_file() and entry.name.startswith(f"{lock.name}."):
            item = _judge_lock(entry, target)
        else:
            continue
        if item is not None:
            found.append(item)
    return found


def _judge_lock(path: Path, target: Path) -> Leftover:
    holder = _read_owner_file(path)
    owner = Owner.from_json(holder)
    if holder is None or owner is None or holder.get("target") != target.name:
        return Leftover(path, "lock", "keep", "not a lock of ours")
    return _by_owner(path, "lock", owner, "remove")


def _judge_folder(path: Path, target: Path, pid: int, kind: str) -> Leftover | None:
    record = _read_owner_file(path / OWNER_FILE)
    owner = Owner.from_json(record)
    if record is None or owner is None or owner.pid != pid or record.get("target") != target.name:
        return None  # not ours: never touched
    if kind == "partial":
        return _by_owner(path, "staging", owner, "remove")
    inner = path / target.name
    phase = record.get("phase")
    if not os.path.lexists(inner) or phase == "replaced":
        return _by_owner(path, "replaced", owner, "remove")
    if phase == "swapping" and not os.path.lexists(target):
        return _by_owner(path, "replaced", owner, "restore")
    return _by_owner(path, "replaced", owner, "keep",
                     f"holds a previous {target.name} ({inner}); move it back or delete it by hand")


def _by_owner(path: Path, kind: str, owner: Owner, action: str, why: str | None = None) -> Leftover:
    state = owner.alive()
    if state is None:
        return Leftover(path, kind, "keep", f"owner {owner.describe()} cannot be checked from this machine")
    if state:
        return Leftover(path, kind, "keep", f"its run ({owner.describe()}) is still going")
    return Leftover(path, kind, action, why or f"its run ({owner.describe()}) ended")


# io.atomic_path's temporary files: `.<name>.<pid>.<n>.tmp` beside the file being written
TEMP_FILE = re.compile(r"\..+\.(\d+)\.\d+\.tmp")
TEMP_FILE_AGE = 60.0  # seconds untouched before a temporary file of an ended process counts as left over


def find_temp_files(folder: Path) -> list[Leftover]:
    """Temporary files of interrupted atomic writes inside `folder` (e.g. a DS folder's index, written
    while a killed `data split` saved it): removed where their process has ended and they are a minute
    old, else kept. Symbolic links are neither followed nor removed."""
    found: list[Leftover] = []
    now = time.time()
    for here, subfolders, files in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not os.path.islink(os.path.join(here, name))]
        for name in sorted(files):
            match = TEMP_FILE.fullmatch(name)
            path = Path(here) / name
            if match is None or path.is_symlink() or not path.is_file():
                continue
            if process_alive(int(match.group(1))) or now - path.stat().st_mtime < TEMP_FILE_AGE:
                found.append(Leftover(path, "temporary file", "keep", "its write may still be going on"))
            else:
                found.append(Leftover(path, "temporary file", "remove", "its run ended before finishing the write"))
    return found


def clean_leftovers(target: Path, dry_run: bool = False, inside: bool = False) -> list[Leftover]:
    """Remove (or, for a replaced folder whose swap was cut off, restore) what ended runs left beside
    `target` (with `inside`, also their temporary files inside it, see `find_temp_files`); returns every
    leftover found, with its action. Nothing of a live run is touched."""
    target = named_target(target)
    found = find_leftovers(target)
    if inside and target.is_dir() and not target.is_symlink():
        found += find_temp_files(target)
    if dry_run:
        return found
    for item in found:
        if item.action == "remove":
            _remove(item.path)
        elif item.action == "restore":
            try:
                rename_noreplace(item.path / target.name, target)
            except FileExistsError:
                continue  # the target came back meanwhile: keep the old folder where it is
            _remove(item.path)
    return found


def _remove(path: Path) -> None:
    """Delete a leftover: its owner file last, so a cut-off removal is recognised and finished next time."""
    if path.is_dir():
        for child in path.iterdir():
            if child.name != OWNER_FILE:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# -- staged output folders ------------------------------------------------------------------------------------


def require_new_folder(path: Path) -> None:
    """InputError unless `path` is absent or an empty folder (outputs never overwrite anything)."""
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{path}: is a link; choose a new output folder (outputs are not written through links)")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path}: exists and is not an empty folder; choose a new output folder")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _appeared(target: Path) -> InputError:
    return InputError(f"{target}: appeared while this run was writing; this run's result was discarded and "
                      f"{target.name} left as it is; choose another output")


@contextmanager
def staged_folder(root: Path, *, may_replace: Callable[[Path], bool] | None = None,
                  carry: Callable[[Path, Path], None] | None = None) -> Iterator[Path]:
    """Yield a new folder to build `root` in; on success it takes `root`'s place in one rename that
    never replaces a folder another run (or anyone) put there meanwhile; on failure it is removed and
    `root` is left as it was.

    While the run lasts it holds `root`'s lock (a second run into `root` is refused at once) and, first,
    cleans up what ended runs left beside `root`. `root` must then be absent or an empty folder, unless
    `may_replace(root)` returns True (it raises InputError to refuse): the folder there is then swapped
    out only once the new one is complete, after `carry(old, new)` brought over what should stay.
    """
    root = named_target(root)
    if root == Path(os.path.abspath(os.curdir)):
        raise InputError(f"{root}: is the current folder, which an output folder replaces once it is complete; "
                         "give a new folder name (e.g. ./out) or run from the folder above")
    token = secrets.token_hex(4)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(root, token)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise InputError(f"{root.parent}: cannot write there ({reason}); "
                         "choose an output folder you can write to") from exc
    staging = root.with_name(f".{_stem(root.name)}.{os.getpid()}.{token}.partial")
    try:
        with suppress(OSError):  # best effort: a leftover that cannot go now is still there for `data clean`
            clean_leftovers(root)
        replace = may_replace(root) if may_replace else False
        if not replace:
            require_new_folder(root)
        existing = _identity(root)
        staging.mkdir()
        _write_owner_file(staging / OWNER_FILE, _owner_record("staging", root, token))
        building = staging / root.name
        building.mkdir()
        yield building
        if replace and existing is not None:
            _swap_in(building, root, existing, token, carry)
        else:
            _publish_new(building, root, existing)
    finally:
        if staging.exists():
            _remove(staging)
        _release_lock(lock, token)


def _publish_new(building: Path, root: Path, existing: tuple[int, int] | None) -> None:
    if existing is not None:  # an empty folder was there at the start: it may go
        if _identity(root) not in (existing, None):
            raise _appeared(root)
        try:
            os.rmdir(root)
        except FileNotFoundError:
            pass
        except OSError as exc:  # something was put into it meanwhile
            raise _appeared(root) from exc
    try:
        rename_noreplace(building, root)
    except FileExistsError as exc:
        raise _appeared(root) from exc
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY:
            raise _appeared(root) from exc
        raise


def _swap_in(building: Path, root: Path, existing: tuple[int, int], token: str,
             carry: Callable[[Path, Path], None] | None) -> None:
    """Replace the folder `root` (the one checked at the start, `existing`) by `building`: the old one
    is moved aside, the new one renamed in without replacing, and the old one deleted only then."""
    if _identity(root) != existing:
        raise InputError(f"{root}: was replaced or removed while this run was writing; this run's result was "
                         f"discarded and {root.name} left as it is; run again")
    if carry is not None:
        carry(root, building)
    aside = root.with_name(f".{_stem(root.name)}.{os.getpid()}.{token}.old")
    record = _owner_record("replaced", root, token, phase="swapping")
    aside.mkdir()
    _write_owner_file(aside / OWNER_FILE, record)
    old = aside / root.name
    os.rename(root, old)
    try:
        if _identity(old) != existing:  # someone swapped `root` between the check and the move
            raise FileExistsError(errno.EEXIST, "replaced meanwhile", str(root))
        rename_noreplace(building, root)
    except BaseException as exc:  # also Ctrl-C: the old folder goes back where it was
        try:
            rename_noreplace(old, root)
        except OSError:
            _write_owner_file(aside / OWNER_FILE, {**record, "phase": "kept"})
            raise InputError(f"{root}: appeared while this run was writing; this run's result was discarded and "
                             f"the previous {root.name} is kept at {old}; move it back by hand") from exc
        _remove(aside)
        if isinstance(exc, FileExistsError) or (isinstance(exc, OSError) and exc.errno == errno.ENOTEMPTY):
            raise _appeared(root) from exc
        raise
    _write_owner_file(aside / OWNER_FILE, {**record, "phase": "replaced"})
    _remove(aside)


# -- report files --------------------------------------------------------------------------------------------


def check_report_path(path: Path, root: Path, own_files: Iterable[str]) -> None:
    """InputError unless `path` may take a report file: not a folder, and not one of the files
    `own_files` (relative to `root`: a data set's index, images and masks), also not via a link."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name for the report, e.g. {path / 'report.json'}")
    resolved, base = path.resolve(), Path(root).resolve()
    if not resolved.is_relative_to(base):
        return
    rel = resolved.relative_to(base).as_posix()
    own = set(own_files)
    identity = _identity(resolved)
    if rel in own or (identity is not None and any(_identity(base / name) == identity for name in own)):
        raise InputError(f"{path}: is {rel}, a file of the data set {root} itself; write the report elsewhere")
