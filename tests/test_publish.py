"""Publishing outputs: no silent replacement, no leftovers of killed runs, no orphaned workers,
--overwrite keeps the user's own files, and report files never land on a data set's own files."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum import staging
from defectspectrum.cli import app
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder, staged_ds_folder
from defectspectrum.errors import InputError
from defectspectrum.staging import Owner, lock_path, rename_noreplace, staged_folder

N_IMAGES = 12


def _folder_source(root: Path, count: int = N_IMAGES) -> Path:
    """A `folder` layout of `count` tiny defect-free images."""
    (root / "images").mkdir(parents=True)
    for number in range(count):
        Image.fromarray(np.full((16, 16, 3), number, np.uint8)).save(root / "images" / f"img{number:03d}.png")
    return root


def _beside(target: Path) -> list[str]:
    """Names beside `target` other than the target itself and the test's own inputs."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def _check_complete(out: Path, count: int = N_IMAGES) -> None:
    folder = DSFolder.open(out)
    assert len(folder) == count
    for sample in folder:
        assert folder.load_image(sample).shape == (16, 16, 3)
        assert folder.load_mask(sample).shape == (16, 16)


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                             check=True)
    return int(process.stdout)


def _owner(pid: int, **extra: object) -> dict[str, object]:
    return {**Owner.me().to_json(), "pid": pid, "started": None, **extra}


# -- two runs into one output ----------------------------------------------------------------------------------

# Runs the command line with a barrier before the named staging step, so that two processes reach it
# together; with NO_LOCK the target's lock is switched off, to prove the publishing rename alone refuses.
_SYNCHRONISED = """
import os, sys, time
from pathlib import Path
from defectspectrum import staging
from defectspectrum.cli import main

barrier, point = Path(os.environ["BARRIER"]), os.environ["BARRIER_AT"]
if os.environ.get("NO_LOCK"):
    staging._take_lock = lambda target, token: staging.lock_path(target)
    staging._release_lock = lambda lock, token: None
real = getattr(staging, point)
def synchronised(*args, **kwargs):
    if not barrier.joinpath(str(os.getpid())).exists():
        barrier.joinpath(str(os.getpid())).touch()
        deadline = time.monotonic() + 30
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    return real(*args, **kwargs)
setattr(staging, point, synchronised)
sys.argv = ["defectspectrum", *sys.argv[1:]]
main()
"""


def _run_two(command: list[str], env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Start `command` twice at once; wait for both."""
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **(env or {})}) for _ in range(2)]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def _one_winner(results: list[subprocess.CompletedProcess[str]], out: Path, refusal: str) -> None:
    assert sorted(r.returncode for r in results) == [0, 2], [r.stderr for r in results]
    loser = next(r for r in results if r.returncode == 2)
    lines = loser.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: ") and refusal in lines[0], loser.stderr
    _check_complete(out)
    assert _beside(out) == []  # no staging folder, no lock


@pytest.mark.parametrize("round_", range(3))
def test_two_concurrent_converts_leave_one_result_and_one_refusal(tmp_path: Path, round_: int) -> None:
    source = _folder_source(tmp_path / "src")
    out = tmp_path / "out"
    results = _run_two([sys.executable, "-m", "defectspectrum", "data", "convert", "--from", "folder", "-j",
                        str(1 + round_ % 2), str(source), str(out)])
    assert sorted(r.returncode for r in results) == [0, 2]
    loser = next(r for r in results if r.returncode == 2)
    # whichever point the second run reached: the lock, the start check, or the publishing rename
    assert any(text in loser.stderr for text in ("another defectspectrum run", "is already a DS folder",
                                                  "appeared while this run was writing")), loser.stderr
    _one_winner(results, out, "")


def test_concurrent_converts_meeting_at_the_lock(tmp_path: Path) -> None:
    source = _folder_source(tmp_path / "src")
    out, barrier = tmp_path / "out", tmp_path / "barrier"
    barrier.mkdir()
    results = _run_two([sys.executable, "-c", _SYNCHRONISED, "data", "convert", "--from", "folder", str(source),
                        str(out)], {"BARRIER": str(barrier), "BARRIER_AT": "_take_lock"})
    _one_winner(results, out, "another defectspectrum run (pid ")


def test_concurrent_converts_without_the_lock_still_never_replace(tmp_path: Path) -> None:
    source = _folder_source(tmp_path / "src")
    out, barrier = tmp_path / "out", tmp_path / "barrier"
    barrier.mkdir()
    results = _run_two([sys.executable, "-c", _SYNCHRONISED, "data", "convert", "--from", "folder", str(source),
                        str(out)], {"BARRIER": str(barrier), "BARRIER_AT": "rename_noreplace", "NO_LOCK": "1"})
    _one_winner(results, out, "appeared while this run was writing")


@pytest.mark.parametrize("to", ["mmseg", "coco"])
def test_concurrent_exports_leave_one_result_and_one_refusal(tmp_path: Path, to: str) -> None:
    source = _folder_source(tmp_path / "src")
    convert(source, tmp_path / "ds", "folder")
    out, barrier = tmp_path / "export", tmp_path / "barrier"
    barrier.mkdir()
    results = _run_two([sys.executable, "-c", _SYNCHRONISED, "data", "export", str(tmp_path / "ds"), str(out),
                        "--to", to], {"BARRIER": str(barrier), "BARRIER_AT": "rename_noreplace", "NO_LOCK": "1"})
    assert sorted(r.returncode for r in results) == [0, 2], [r.stderr for r in results]
    loser = next(r for r in results if r.returncode == 2).stderr.strip().splitlines()
    assert len(loser) == 1 and loser[0].startswith(f"error: {out}: appeared while this run was writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["src", "ds", "barrier", out.name])


# -- the publishing step in one process ------------------------------------------------------------------------


@pytest.mark.parametrize("native", [True, False], ids=["renameat2", "portable"])
def test_a_target_that_appears_meanwhile_is_never_replaced(tmp_path: Path, monkeypatch, native: bool) -> None:
    if not native:
        monkeypatch.setattr(staging, "_native_rename_noreplace", lambda src, dst: False)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="appeared while this run was writing"), staged_folder(out) as building:
        (building / "result.txt").write_text("mine")
        out.mkdir()  # an empty folder appears: a plain rename would replace it
    assert list(out.iterdir()) == []
    with pytest.raises(InputError, match="appeared while this run was writing"), staged_folder(out) as building:
        (building / "result.txt").write_text("mine")
        (out / "theirs.txt").write_text("theirs")  # the empty folder there at the start is filled
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert _beside(out) == []


def test_an_empty_folder_there_at_the_start_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with staged_folder(out) as building:
        (building / "result.txt").write_text("mine")
    assert (out / "result.txt").read_text() == "mine"
    assert _beside(out) == []


def test_rename_noreplace_refuses_files_and_folders(tmp_path: Path, monkeypatch) -> None:
    for native in (True, False):
        if not native:
            monkeypatch.setattr(staging, "_native_rename_noreplace", lambda src, dst: False)
        (tmp_path / "a").write_text("a")
        (tmp_path / "b").write_text("b")
        with pytest.raises(FileExistsError):
            rename_noreplace(tmp_path / "a", tmp_path / "b")
        assert (tmp_path / "b").read_text() == "b"
        (tmp_path / "d1").mkdir()
        (tmp_path / "d2").mkdir()
        with pytest.raises(FileExistsError):
            rename_noreplace(tmp_path / "d1", tmp_path / "d2")
        rename_noreplace(tmp_path / "a", tmp_path / "c")
        assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()
        for name in ("b", "c"):
            (tmp_path / name).unlink()
        for name in ("d1", "d2"):
            (tmp_path / name).rmdir()


def test_without_native_no_replace_rename_or_hard_links_the_lock_still_excludes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(staging, "_native_rename_noreplace", lambda src, dst: False)

    def no_hard_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_hard_links)
    out = tmp_path / "out"
    with staged_folder(out) as building:
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()  # created with O_EXCL
        with pytest.raises(InputError, match="another defectspectrum run"), staged_folder(out):
            pass
        (building / "result.txt").write_text("mine")
    assert (out / "result.txt").read_text() == "mine" and _beside(out) == []
    other = tmp_path / "other"
    lock_path(other).write_text("")  # a run that has just created its lock and not yet written it
    with pytest.raises(InputError, match="another defectspectrum run is starting to write it"), staged_folder(other):
        pass


def test_overwrite_does_not_clobber_a_folder_swapped_in_meanwhile(tmp_path: Path) -> None:
    source = _folder_source(tmp_path / "src")
    out = convert(source, tmp_path / "out", "folder").root
    with pytest.raises(InputError, match="was replaced or removed while this run was writing"), \
            staged_ds_folder(out, overwrite=True) as building:
        (building / "result.txt").write_text("mine")
        out.rename(tmp_path / "moved")
        out.mkdir()
        (out / "theirs.txt").write_text("theirs")
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    _check_complete(tmp_path / "moved")
    assert _beside(out) == []


@pytest.mark.parametrize("failure", [OSError(5, "Input/output error"), KeyboardInterrupt()], ids=["EIO", "Ctrl-C"])
def test_overwrite_puts_the_old_folder_back_when_the_new_one_cannot_go_in(tmp_path: Path, monkeypatch,
                                                                          failure: BaseException) -> None:
    source = _folder_source(tmp_path / "src")
    out = convert(source, tmp_path / "out", "folder").root
    real = staging.rename_noreplace
    calls: list[Path] = []

    def failing_once(src: Path, dst: Path) -> None:  # the new folder's rename fails, the move back works
        if Path(dst) == out:
            calls.append(Path(src))
            if len(calls) == 1:
                raise failure
        real(src, dst)

    monkeypatch.setattr(staging, "rename_noreplace", failing_once)
    with pytest.raises(type(failure)), staged_ds_folder(out, overwrite=True) as building:
        (building / "result.txt").write_text("mine")
    assert len(calls) == 2 and calls[1].name == "out" and calls[1].parent.name.endswith(".old")
    _check_complete(out)
    assert not (out / "result.txt").exists()
    assert _beside(out) == []


# -- leftovers of killed runs ----------------------------------------------------------------------------------


def _fake_leftover(parent: Path, target: str, pid: int, kind: str, token: str = "0123abcd", **record: object) -> Path:
    folder = parent / f".{target}.{pid}.{token}.{kind}"
    (folder / target).mkdir(parents=True)
    (folder / target / "half.png").write_bytes(b"half")
    (folder / "owner.json").write_text(json.dumps({"defectspectrum": "staging", "target": target, "token": "t",
                                                   **_owner(pid), **record}))
    return folder


def test_the_next_run_removes_stale_leftovers_it_owns_and_nothing_else(tmp_path: Path) -> None:
    source = _folder_source(tmp_path / "src")
    dead = _dead_pid()
    stale = _fake_leftover(tmp_path, "out", dead, "partial")
    live = _fake_leftover(tmp_path, "out", os.getpid(), "partial")  # a run of this process: still going
    other_host = _fake_leftover(tmp_path, "out", dead + 1, "partial", host="elsewhere.example")
    other_target = _fake_leftover(tmp_path, "outer", dead, "partial")
    look_alike = tmp_path / f".out.{dead}.89abcdef.partial"
    look_alike.mkdir()
    (look_alike / "precious.txt").write_text("not ours")  # our naming, but no owner file: never touched
    lock_path(tmp_path / "out").write_text(json.dumps({"defectspectrum": "lock", "target": "out", **_owner(dead)}))
    convert(source, tmp_path / "out", "folder")
    _check_complete(tmp_path / "out")
    assert not stale.exists() and not lock_path(tmp_path / "out").exists()
    assert live.exists() and other_host.exists() and other_target.exists()
    assert (look_alike / "precious.txt").read_text() == "not ours"


def test_a_live_or_unknown_lock_refuses_with_one_line(tmp_path: Path) -> None:
    source = _folder_source(tmp_path / "src")
    out = tmp_path / "out"
    lock = lock_path(out)
    lock.write_text(json.dumps({"defectspectrum": "lock", "target": "out", **_owner(os.getpid())}))
    result = CliRunner().invoke(app, ["data", "convert", "--from", "folder", str(source), str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {out}: another defectspectrum run (pid {os.getpid()}) is writing it; wait for it to end or choose "
        "another output"]
    lock.write_text(json.dumps({"defectspectrum": "lock", "target": "out", **_owner(4242, host="elsewhere")}))
    result = CliRunner().invoke(app, ["data", "convert", "--from", "folder", str(source), str(out)])
    assert result.exit_code == 2 and f"if no run is active there, remove {lock}" in result.output
    lock.write_text("a file of the user's")
    with pytest.raises(InputError, match="is not a defectspectrum lock"):
        convert(source, out, "folder")
    assert lock.read_text() == "a file of the user's" and not out.exists()


def test_data_clean_restores_a_folder_whose_swap_was_cut_off(tmp_path: Path) -> None:
    source = _folder_source(tmp_path / "src")
    convert(source, tmp_path / "built", "folder")
    dead = _dead_pid()
    cut_off = tmp_path / f".out.{dead}.0123abcd.old"
    cut_off.mkdir()
    (tmp_path / "built").rename(cut_off / "out")  # killed after moving the old folder aside
    (cut_off / "owner.json").write_text(json.dumps({"defectspectrum": "replaced", "target": "out",
                                                    "phase": "swapping", **_owner(dead)}))
    done = _fake_leftover(tmp_path, "out", dead, "old", "4567cdef", phase="replaced")  # cut off while deleting
    staging_left = _fake_leftover(tmp_path, "out", dead, "partial")
    runner = CliRunner()
    listed = runner.invoke(app, ["data", "clean", "--dry-run", str(tmp_path / "out")], terminal_width=300)
    assert listed.exit_code == 0 and "would restore" in listed.output and "would remove" in listed.output
    assert cut_off.exists() and done.exists() and staging_left.exists()
    result = runner.invoke(app, ["data", "clean", str(tmp_path / "out")], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert f"restored {cut_off}" in result.output and f"removed {staging_left}" in result.output
    _check_complete(tmp_path / "out")
    assert _beside(tmp_path / "out") == []
    again = runner.invoke(app, ["data", "clean", str(tmp_path / "out")], terminal_width=300)
    assert again.exit_code == 0 and "nothing to clean" in again.output


def test_data_clean_has_help_with_an_example() -> None:
    result = CliRunner().invoke(app, ["data", "clean", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "Example: defectspectrum data clean" in result.output


# -- workers of a killed parent --------------------------------------------------------------------------------

# The command line, each sample slowed down so that the conversion is still running when it is killed
# (the workers are forked, so they inherit the slowed function).
_SLOW_CONVERT = """
import os, sys, time
from defectspectrum.data import convert
from defectspectrum.cli import main

if os.environ.get("NO_PRCTL"):
    convert._PR_SET_PDEATHSIG = -1  # prctl refuses: the workers fall back to watching their parent

real = convert.convert_sample
def slow(*args):
    time.sleep(0.2)
    return real(*args)
convert.convert_sample = slow
sys.argv = ["defectspectrum", *sys.argv[1:]]
main()
"""


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def _wait_for(condition, seconds: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc")
@pytest.mark.parametrize("guard", ["parent-death signal", "watchdog thread"])
def test_workers_end_with_a_killed_parent_and_the_next_run_cleans_up(tmp_path: Path, guard: str) -> None:
    source = _folder_source(tmp_path / "src", 40)
    out = tmp_path / "out"
    env = {**os.environ, "NO_PRCTL": "1" if guard == "watchdog thread" else ""}
    parent = subprocess.Popen([sys.executable, "-c", _SLOW_CONVERT, "data", "convert", "--from", "folder", "-j", "2",
                               str(source), str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    workers: list[int] = []
    try:
        assert _wait_for(lambda: len(_children(parent.pid)) >= 2 and any(out.parent.glob(".out.*.partial"))), \
            "the conversion did not start its workers"
        workers = _children(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_for(lambda: not any(staging.process_alive(pid) for pid in workers), 10), \
            "worker processes outlived their killed parent"
    finally:
        for pid in workers:  # never leave them running, whatever the outcome
            if staging.process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
    left = [p.name for p in out.parent.glob(".out.*.partial")]
    assert left and lock_path(out).exists() and not out.exists()  # what the killed run left
    convert(source, out, "folder", workers=1)
    _check_complete(out, 40)
    assert _beside(out) == []


# -- --overwrite keeps the user's files ----------------------------------------------------------------------


def test_overwrite_keeps_the_users_own_files_and_says_so(tmp_path: Path) -> None:
    source = _folder_source(tmp_path / "src")
    out = tmp_path / "out"
    convert(source, out, "folder")
    (out / "notes.txt").write_text("my notes")
    (out / "reports").mkdir()
    (out / "reports" / "stats.json").write_text("{}")
    (out / "scratch").mkdir()  # an empty folder of the user's
    owned_old = DSFolder.open(out)["src/img011"]
    (source / "images" / "img011.png").unlink()  # the new conversion has one sample less
    result = CliRunner().invoke(app, ["data", "convert", "--from", "folder", "--overwrite", str(source), str(out)],
                                terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "kept 3 file(s) of yours from the replaced folder: notes.txt, reports/stats.json, scratch/" in \
        " ".join(result.output.split())
    assert (out / "notes.txt").read_text() == "my notes" and (out / "reports" / "stats.json").read_text() == "{}"
    assert (out / "scratch").is_dir()
    assert not (out / owned_old.image).exists()  # what the old index owned went with it
    _check_complete(out, N_IMAGES - 1)
    assert _beside(out) == []


def test_overwrite_refuses_a_kept_file_that_clashes_with_the_new_folder(tmp_path: Path) -> None:
    source = _folder_source(tmp_path / "src")
    out = tmp_path / "out"
    (source / "images" / "img011.png").rename(tmp_path / "later.png")
    convert(source, out, "folder")
    clash = out / DSFolder.open(out)["src/img000"].mask.replace("img000", "img011")
    clash.write_text("the user's file where the new folder puts a mask")
    (tmp_path / "later.png").rename(source / "images" / "img011.png")
    before = sorted((str(p), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    result = CliRunner().invoke(app, ["data", "convert", "--from", "folder", "--overwrite", str(source), str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {clash}: a file of yours in the DS folder being replaced has the name of a file of the new one; "
        "move it out of the folder and run again"]
    assert sorted((str(p), p.read_bytes()) for p in out.rglob("*") if p.is_file()) == before
    assert _beside(out) == []


# -- --json reports --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["stats", "validate"])
def test_json_report_never_overwrites_the_data_sets_own_files(tmp_path: Path, command: str) -> None:
    out = convert(_folder_source(tmp_path / "src"), tmp_path / "out", "folder").root
    sample = DSFolder.open(out)["src/img000"]
    (tmp_path / "link.json").symlink_to(out / "samples.jsonl")
    runner = CliRunner()
    for target in (out / "dataset.json", out / "samples.jsonl", out / sample.image, out / sample.mask,
                   tmp_path / "link.json", out / "src" / ".." / "dataset.json"):
        before = (out / "samples.jsonl").read_bytes(), (out / "dataset.json").read_bytes()
        result = runner.invoke(app, ["data", command, str(out), "--json", str(target)], terminal_width=400)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {target}: is ") and "a file of the data set" in lines[0]
        assert ((out / "samples.jsonl").read_bytes(), (out / "dataset.json").read_bytes()) == before
    _check_complete(out)
    result = runner.invoke(app, ["data", command, str(out), "--json", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path}: is a folder; give a file name for the report, e.g. {tmp_path / 'report.json'}"]
    result = runner.invoke(app, ["data", command, str(out), "--json", str(out / "report.json")])
    assert result.exit_code == 0 and json.loads((out / "report.json").read_text())


def test_owner_alive_tells_ended_reused_and_foreign_processes_apart() -> None:
    me = Owner.me()
    assert me.alive() is True
    assert Owner(_dead_pid(), me.host, me.boot, None).alive() is False
    if me.started is not None:
        assert Owner(me.pid, me.host, me.boot, str(int(me.started) + 1)).alive() is False  # pid reused
    if me.boot:
        assert Owner(me.pid, me.host, "another-boot", me.started).alive() is False  # the machine rebooted
    assert Owner(me.pid, f"not-{socket.gethostname()}", me.boot, me.started).alive() is None
    if me.pid_namespace:
        assert Owner(me.pid, me.host, me.boot, me.started, "pid:[1]").alive() is None  # another container
