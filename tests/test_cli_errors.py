"""One-line errors from every command: OSErrors and decode errors named by file with a fix, paths
printed literally (never as rich markup), a damaged DS folder reported as such, files given
where a folder is wanted, absurd synth sizes; bugs keep their traceback. Also the explicit
`--from auto` detection order and the writer registry behind `data export --to`."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli_helpers import invoke, one_line_error
from cli_helpers import make_ds as shared_make_ds
from defectspectrum.cli import app
from defectspectrum.cli_support import error_message, printable
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.export import EXPORT_FORMATS, WRITERS, Writer, export, register_writer, writer_names
from defectspectrum.data.formats import DETECTION_ORDER, READERS, detect_format, detection_order
from defectspectrum.errors import InputError, SchemaError

# -- helpers ------------------------------------------------------------------------------------------------


def run(*args: str | Path) -> tuple[int, str]:
    result = invoke(*args)
    return result.exit_code, result.output


def make_ds(root: Path, name: str = "toy", objects: tuple[str, ...] = ("plate",)) -> DSFolder:
    """A tiny DS folder: per object one defective and one defect-free 16x16 sample."""
    return shared_make_ds(root, name, {obj: ["dent"] for obj in objects})


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return make_ds(tmp_path / "ds").root


# -- the mapping itself ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "expected"), [
    (PermissionError(errno.EACCES, "Permission denied", "/data/ds/samples.jsonl"),
     "/data/ds/samples.jsonl: permission denied; check its permissions"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/out/x.json"),
     "/mnt/out/x.json: read-only file system; write to a writable location"),
    (OSError(errno.ENOSPC, "No space left on device", "/full/out.png"),
     "/full/out.png: no space left on the device; free some space or write elsewhere"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "/x/" + "a" * 300),
     "/x/" + "a" * 300 + ": file name too long; use a shorter name or path"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/x/.stats.json.1.tmp", None, "/x/stats.json"),
     "/x/stats.json: is a folder; give a file path"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/.a.tmp", None, "/x/a.json"),
     "/x/.a.tmp -> /x/a.json: permission denied; check its permissions"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/file/sub"),
     "/x/file/sub: a part of the path is not a folder; check the path"),
    (FileExistsError("out already exists and is not empty; choose a new or empty folder"),
     "out already exists and is not empty; choose a new or empty folder"),  # a message of its own wins
    (OSError(errno.EHOSTDOWN, "Host is down", "/net/x"), "/net/x: host is down; check the path"),
    (InputError("x.json: bad; fix it\nsecond line"), "x.json: bad; fix it"),
])
def test_error_message_names_the_file_and_the_fix(exc: BaseException, expected: str) -> None:
    assert error_message(exc) == expected


def test_a_permission_error_creating_a_new_path_names_its_folder(tmp_path: Path) -> None:
    exc = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".out.x1.partial"))
    assert error_message(exc) == (f"{tmp_path}: cannot create .out.x1.partial in this folder (permission denied); "
                                  "check its permissions")


def test_bugs_are_not_mapped_and_keep_their_traceback(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bug in (TypeError("unhashable"), KeyError("x"), ValueError("boom"), AttributeError("y")):
        assert error_message(bug) is None

    def broken(*_: object, **__: object) -> None:
        raise TypeError("a bug in compute_stats")

    monkeypatch.setattr("defectspectrum.data.stats.compute_stats", broken)
    result = CliRunner().invoke(app, ["data", "stats", str(ds)])
    assert isinstance(result.exception, TypeError)  # not swallowed into a one-line error


def test_printable_escapes_control_characters_and_undecodable_bytes() -> None:
    assert printable("a\nb\x1b[2Jc") == "a\\nb\\x1b[2Jc"
    assert printable(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    assert printable("über [red]x[/]") == "über [red]x[/]"


# -- real OSErrors through the CLI ---------------------------------------------------------------------------


def test_json_output_pointing_at_a_folder_is_one_line(ds: Path, tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    for command in ("stats", "validate"):
        one_line_error(["data", command, ds, "--json", tmp_path / "report"],
                       f"{tmp_path / 'report'}: is a folder; give a file name for the report")
    assert list((tmp_path / "report").iterdir()) == []


def test_output_below_a_file_and_onto_a_file_are_one_line(ds: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("keep me", encoding="utf-8")
    one_line_error(["data", "show", ds, blocker / "sub"], str(blocker))
    one_line_error(["data", "stats", ds, "--json", blocker / "s.json"], str(blocker))
    one_line_error(["data", "synth", blocker / "x", "--materials", "metal", "--size", "32"], str(blocker))
    one_line_error(["data", "show", ds, blocker], str(blocker))
    assert blocker.read_text(encoding="utf-8") == "keep me"


def test_a_file_name_too_long_is_one_line(ds: Path, tmp_path: Path) -> None:
    long = tmp_path / ("x" * 300)
    one_line_error(["data", "synth", long, "--materials", "metal", "--size", "32"], "file name too long")
    one_line_error(["data", "stats", ds, "--json", long], "file name too long")
    one_line_error(["data", "convert", ds, long], "file name too long")


def test_os_errors_while_writing_are_one_line(ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename that publishes a file fails the way a read-only, full or locked file system makes it fail."""
    import defectspectrum.io

    target = tmp_path / "stats.json"
    for code, what in ((errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system"),
                       (errno.ENOSPC, "no space left on the device")):
        def failing_replace(src: object, dst: object, code: int = code) -> None:
            raise OSError(code, os.strerror(code), str(src), None, str(dst))

        monkeypatch.setattr(defectspectrum.io.os, "replace", failing_replace)
        one_line_error(["data", "stats", ds, "--json", target], what, str(target))
    assert not target.exists() and not list(tmp_path.glob(".stats.json*"))


def test_an_unreadable_file_is_one_line(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PermissionError raised where the index is opened (as an unreadable file raises it)."""
    import builtins
    import io

    real_open, real_os_open = builtins.open, os.open
    index = str(ds / "samples.jsonl")

    def guarded_open(file: object, *args: object, **kwargs: object) -> object:
        if not isinstance(file, int) and os.fspath(file) == index:  # type: ignore[call-overload]
            raise PermissionError(errno.EACCES, "Permission denied", index)
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    def guarded_os_open(file: object, *args: object, **kwargs: object) -> int:
        if os.fspath(file) == index:  # type: ignore[call-overload]
            raise PermissionError(errno.EACCES, "Permission denied", index)
        return real_os_open(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)  # pathlib's Path.open
    monkeypatch.setattr(os, "open", guarded_os_open)  # io.open_regular
    for command in ("stats", "validate", "split", "caption"):
        one_line_error(["data", command, ds], f"{index}: ", "ermission denied")


# -- decode errors ------------------------------------------------------------------------------------------------


def test_non_utf8_index_is_one_line_naming_it(ds: Path) -> None:
    index = ds / "samples.jsonl"
    index.write_bytes(index.read_bytes() + b'{"id": "caf\xe9"}\n')
    one_line_error(["data", "stats", ds], f"{index}:3", "UTF-8")
    result = invoke("data", "validate", ds)  # validate reports the bad line with the others
    assert result.exit_code == 1 and "bad-index-entry" in result.stdout and "UTF-8" in result.stdout


def test_non_utf8_dataset_json_is_one_line_naming_it(ds: Path, tmp_path: Path) -> None:
    index = ds / "dataset.json"
    index.write_bytes(index.read_bytes().replace(b'"toy"', b'"t\xf6y"'))
    one_line_error(["data", "stats", ds], str(index), "UTF-8")
    one_line_error(["data", "convert", ds, tmp_path / "copy"], str(index), "UTF-8")


def test_non_utf8_classes_txt_is_one_line_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "mm"
    for sub in ("img_dir/train", "ann_dir/train"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "img_dir/train/a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "ann_dir/train/a.png")
    (root / "classes.txt").write_bytes(b"background\nRi\xdf\n")
    one_line_error(["data", "convert", "--from", "mmseg", root, tmp_path / "out"], str(root / "classes.txt"), "UTF-8")
    assert not (tmp_path / "out").exists()


def test_non_utf8_palette_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "src" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "src/images/a.png")
    palette = tmp_path / "palette.yaml"
    palette.write_bytes(b"scratch: [255, 0, 0]\nd\xe9nt: [0, 255, 0]\n")
    one_line_error(["data", "convert", "--from", "folder", "--palette", palette, tmp_path / "src", tmp_path / "o"],
                   str(palette), "UTF-8")


# -- paths printed literally, never as markup --------------------------------------------------------------------


def test_paths_with_markup_are_printed_literally(tmp_path: Path) -> None:
    weird = tmp_path / "a[" / "]b [red]x[/red] [bold]"  # the path holds "[/]" and "[red]"
    assert "[/]" in str(weird)
    source = make_ds(tmp_path / "src").root
    ds = weird / "ds [red]"
    code, output = run("data", "convert", source, ds)
    assert code == 0, output
    assert f"wrote {ds}:" in output

    code, output = run("data", "stats", ds, "--json", weird / "stats [x].json")
    assert code == 0 and "ds [red]" in output and f"wrote {weird / 'stats [x].json'}" in output, output
    code, output = run("data", "validate", ds, "--json", weird / "v.json")
    assert code == 0 and f"wrote {weird / 'v.json'}" in output, output
    code, output = run("data", "show", ds, weird / "show [/]")
    assert code == 0 and f"contact sheet {weird / 'show [' / ']'}" in output, output
    for fmt, dst in (("coco", weird / "c [red]"), ("mmseg", weird / "mm [/]"), ("ds-release", weird / "r[b]")):
        code, output = run("data", "export", ds, dst, "--to", fmt)
        assert code == 0 and f"wrote {dst}" in output, output


def test_errors_about_paths_with_markup_are_printed_literally(tmp_path: Path) -> None:
    missing = tmp_path / "no[/]pe [red]"
    for command in ("stats", "validate", "split", "caption"):
        one_line_error(["data", command, missing], f"error: {missing}: folder not found")
    one_line_error(["data", "show", missing, tmp_path / "o"], f"{missing}: folder not found")
    one_line_error(["data", "export", missing, tmp_path / "o", "--to", "mmseg"], f"{missing}: folder not found")
    one_line_error(["data", "convert", missing, tmp_path / "o"], f"{missing}: folder not found")


def test_validation_issues_quoting_markup_are_printed_literally(tmp_path: Path) -> None:
    ds = make_ds(tmp_path / "x[/]y [red]").root
    (ds / "plate" / "images" / "bad.png").unlink()
    code, output = run("data", "validate", ds)
    assert code == 1, output
    assert "FAILED" in output and "[/]" in output


def test_help_shows_square_brackets_literally() -> None:
    code, output = run("data", "convert", "--help")
    assert code == 0 and "[r, g, b]" in output


@pytest.mark.parametrize("command", ["convert", "formats", "export", "stats", "validate", "show", "split",
                                     "caption", "synth"])
def test_every_help_text_with_brackets_is_shown_in_full(command: str) -> None:
    """typer renders help as rich markup: a `[...]` written without `\\[` would vanish from the help."""
    import typer.main

    group = typer.main.get_command(app)
    data = group.commands["data"]  # type: ignore[attr-defined]
    cmd = data.commands[command]
    result = CliRunner().invoke(app, ["data", command, "--help"])
    shown = " ".join(result.output.replace("│", " ").split())  # the help column, its wrapped lines joined
    for text in [cmd.help or "", *(getattr(param, "help", None) or "" for param in cmd.params)]:
        if "[" in text:
            assert " ".join(text.replace("\\[", "[").split()) in shown, text  # what was written, literally
            assert "\\[" not in shown


# -- folders and files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["stats"], ["validate"], ["split"], ["caption"], ["show", "OUT"],
                                  ["export", "OUT", "--to", "mmseg"]])
def test_a_file_given_for_the_ds_folder_says_so(args: list[str], ds: Path, tmp_path: Path) -> None:
    index = ds / "samples.jsonl"
    argv = ["data", args[0], index, *[tmp_path / "out" if a == "OUT" else a for a in args[1:]]]
    one_line_error(argv, f"{index}: is a file, not a folder; pass the DS folder")
    assert not (tmp_path / "out").exists()


def test_other_non_folders_given_for_the_ds_folder_say_what_they_are(ds: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    one_line_error(["data", "stats", tmp_path / "pipe"], "is not a folder (a device, pipe or socket)")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    one_line_error(["data", "validate", tmp_path / "dangling"], "symbolic link to a missing path")


def test_a_symbolic_link_loop_as_output_is_one_line(ds: Path, tmp_path: Path) -> None:
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    one_line_error(["data", "convert", ds, tmp_path / "l1"], "too many levels of symbolic links")
    one_line_error(["data", "stats", ds, "--json", tmp_path / "l1" / "s.json"],
                   f"{tmp_path / 'l1'}", "symbolic link")


def test_damaged_dataset_json_is_reported_as_a_damaged_ds_folder(ds: Path, tmp_path: Path) -> None:
    index = ds / "dataset.json"
    text = index.read_text(encoding="utf-8")
    index.write_text(text.replace('"objects"', '"objects" "oops"', 1), encoding="utf-8")
    with pytest.raises(SchemaError, match=r"invalid JSON at line \d+ .*\(this looks like a DS folder\)"):
        detect_format(ds)
    one_line_error(["data", "convert", ds, tmp_path / "out"], f"{index}: invalid JSON at line",
                   "(this looks like a DS folder)")
    index.write_text(json.dumps({"format": "defect-spectrum", "version": 1}), encoding="utf-8")
    one_line_error(["data", "convert", ds, tmp_path / "out"], f"{index}:", "'defect-spectrum'",
                   "this looks like a DS folder")
    index.write_text("[1, 2]", encoding="utf-8")
    one_line_error(["data", "convert", ds, tmp_path / "out"], "a JSON list", "this looks like a DS folder")
    index.unlink()  # the index gone too: the images are read as a plain folder, as any folder of images
    assert detect_format(ds) == "folder"


def test_another_tools_dataset_json_does_not_look_like_a_ds_folder(tmp_path: Path) -> None:
    root = tmp_path / "nnunet"
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "a.png")
    (root / "dataset.json").write_text('{"labels": {"background": 0}', encoding="utf-8")  # damaged, not ours
    assert detect_format(root) == "folder"


# -- synth sizes and counts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "fragment"), [
    ("100000", "--size '100000': each side must be 16 to 4096 px"),
    ("16x99999", "--size '16x99999': each side must be 16 to 4096 px"),
    ("0", "each side must be 16 to 4096 px"),
    ("-5", "each side must be"),
    ("abc", "--size 'abc': give a size as N or HxW"),
    ("1x2x3", "give a size as N or HxW"),
])
def test_synth_refuses_absurd_sizes_in_one_line(size: str, fragment: str, tmp_path: Path) -> None:
    one_line_error(["data", "synth", tmp_path / "s", "--size", size], fragment)
    assert not (tmp_path / "s").exists()


def test_synth_refuses_absurd_counts_in_one_line(tmp_path: Path) -> None:
    one_line_error(["data", "synth", tmp_path / "s", "--per-type", "99999999"], "--per-type 99999999: at most")
    one_line_error(["data", "synth", tmp_path / "s", "--good", "10001"], "--good 10001: at most")
    one_line_error(["data", "synth", tmp_path / "s", "--seed", "-1"], "seed must be a non-negative integer")
    one_line_error(["data", "synth", tmp_path / "s", "--layout", "voc"], "--layout 'voc': choose")
    assert not (tmp_path / "s").exists()


def test_synth_library_bounds_sizes_and_counts(tmp_path: Path) -> None:
    from defectspectrum.data.synth import MAX_SIDE, render_sample, write_ds_folder

    with pytest.raises(InputError, match="too large"):
        render_sample("metal", (MAX_SIDE + 1, 16), np.random.default_rng(0))
    with pytest.raises(InputError, match="at most"):
        write_ds_folder(tmp_path / "x", materials=["metal"], n_defective_per_type=10**9, size=(16, 16))
    assert not (tmp_path / "x").exists()


def test_demo_prints_one_line_for_os_errors_and_keeps_bugs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import defectspectrum.demo as demo

    def denied(*_: object, **__: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "demo_output"))

    monkeypatch.setattr(demo, "run_demo", denied)
    assert demo.main(["--out", str(tmp_path / "demo_output")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path}: cannot create demo_output in this folder (permission denied); "
        "check its permissions"]

    def bug(*_: object, **__: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(demo, "run_demo", bug)
    with pytest.raises(TypeError):
        demo.main(["--out", str(tmp_path / "demo_output")])


# -- real processes: permissions, read-only and full file systems ------------------------------------------------


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("defectspectrum")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "defectspectrum"]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's own tmp folders are private to their owner)."""
    path = Path(tempfile.mkdtemp(prefix="ds-cli-errors-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o755)
    shutil.rmtree(path)


def _unprivileged_prefix(where: Path) -> list[str]:
    """How to run a command so that permission bits apply: as is for a normal user; as `nobody` through
    setpriv(1) when the tests run as root (root ignores permission bits). Checked on a 0600 probe
    file; skips where no such way exists."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv(1): permission bits cannot be tested")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = where / "probe"
    probe.write_text("secret", encoding="utf-8")
    probe.chmod(0o600)
    check = subprocess.run([*prefix, "cat", str(probe)], capture_output=True, text=True)
    probe.unlink()
    if check.returncode == 0:
        pytest.skip("setpriv did not drop root's privileges here: permission bits cannot be tested")
    return prefix


def _run_unprivileged(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the console script where permission bits apply (see `_unprivileged_prefix`)."""
    env = {**os.environ, "HOME": str(cwd), "DEFECTSPECTRUM_NO_PROGRESS": "1"}
    return subprocess.run([*_unprivileged_prefix(cwd), *_console_script(), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _assert_one_line(process: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), process.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions only")
def test_console_script_unreadable_index_and_read_only_parent(shared_tmp: Path) -> None:
    ds = make_ds(shared_tmp / "ds").root
    locked = shared_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)  # nobody (or a non-root owner) cannot create anything in it
    process = _run_unprivileged(["data", "convert", ds, locked / "out"], shared_tmp)
    _assert_one_line(process, f"{locked}: cannot write there", "ermission denied")
    assert list(locked.iterdir()) == []

    process = _run_unprivileged(["data", "stats", ds, "--json", locked / "stats.json"], shared_tmp)
    _assert_one_line(process, str(locked), "permission denied")

    (ds / "samples.jsonl").chmod(0o000)
    for command in ("stats", "validate"):
        process = _run_unprivileged(["data", command, ds], shared_tmp)
        _assert_one_line(process, f"{ds / 'samples.jsonl'}: ", "ermission denied")
    (ds / "samples.jsonl").chmod(0o644)

    writable = shared_tmp / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    image = ds / "plate" / "images" / "bad.png"
    image.chmod(0o000)
    process = _run_unprivileged(["data", "export", ds, writable / "mm", "--to", "mmseg"], shared_tmp)
    _assert_one_line(process, str(image))
    assert list(writable.iterdir()) == []  # no output, no staging folder left
    image.chmod(0o644)

    ds.chmod(0o000)  # the folder itself cannot be read
    process = _run_unprivileged(["data", "convert", ds, writable / "copy"], shared_tmp)
    _assert_one_line(process, str(ds), "permission denied")
    assert list(writable.iterdir()) == []
    ds.chmod(0o755)


def _mounted(fs_options: str, args: list[str | Path], where: Path) -> subprocess.CompletedProcess[str]:
    """Run the console script with a fresh tmpfs mounted at `where` (private mount namespace), or skip."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("mounting a read-only or tiny file system needs root and unshare(1)")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o {fs_options} tmpfs {where}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    command = " ".join(f"'{part}'" for part in [*_console_script(), *map(str, args)])
    return subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o {fs_options} tmpfs {where} && {command}"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DEFECTSPECTRUM_NO_PROGRESS": "1"})


def test_console_script_on_a_read_only_file_system(tmp_path: Path) -> None:
    where = tmp_path / "ro"
    where.mkdir()
    process = _mounted("ro,size=1m", ["data", "synth", where / "out", "--materials", "metal", "--size", "32"], where)
    _assert_one_line(process, "read-only file system", str(where))


def test_console_script_on_a_full_file_system(tmp_path: Path) -> None:
    where = tmp_path / "full"
    where.mkdir()
    ds = make_ds(tmp_path / "ds").root
    process = _mounted("size=48k", ["data", "synth", where / "out", "--materials", "metal", "--size", "128",
                                    "--per-type", "3"], where)
    _assert_one_line(process, "no space left on the device", str(where))
    process = _mounted("size=8k", ["data", "export", ds, where / "mm", "--to", "mmseg"], where)
    _assert_one_line(process, "no space left on the device", str(where))


# -- detection order --------------------------------------------------------------------------------------------------


def test_detection_order_names_every_reader_once_with_folder_last() -> None:
    order = detection_order()
    assert sorted(DETECTION_ORDER) == sorted(READERS) and len(set(DETECTION_ORDER)) == len(DETECTION_ORDER)
    assert order == list(DETECTION_ORDER) and order[-1] == "folder"


def test_formats_lists_readers_in_detection_order_then_writers() -> None:
    code, output = run("data", "formats")
    assert code == 0
    readers, writers = output.split("writers (data export --to)")
    listed = [line.split()[0] for line in readers.splitlines()[2:] if line.strip() and not line.startswith(" ")]
    assert listed == list(DETECTION_ORDER)
    listed = [line.split()[0] for line in writers.splitlines()[2:] if line.strip() and not line.startswith(" ")]
    assert listed == writer_names() == list(EXPORT_FORMATS)


def test_detection_follows_the_declared_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder two readers claim (an MVTec category that also holds img_dir/ann_dir) goes to the one listed
    first, and changing only DETECTION_ORDER changes the answer."""
    import defectspectrum.data.formats as formats

    root = tmp_path / "both" / "bottle"
    for sub in ("test/broken", "ground_truth/broken", "img_dir/train", "ann_dir/train"):
        (root / sub).mkdir(parents=True)
    assert READERS["mvtec"].detect(root) and READERS["mmseg"].detect(root)
    assert detect_format(root) == "mvtec"
    swapped = tuple("mmseg" if n == "mvtec" else "mvtec" if n == "mmseg" else n for n in DETECTION_ORDER)
    monkeypatch.setattr(formats, "DETECTION_ORDER", swapped)
    assert detect_format(root) == "mmseg"


def _image(path: Path, value: int = 90, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _mask(path: Path, value: int = 255, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size, size), np.uint8)
    mask[2:6, 2:6] = value
    Image.fromarray(mask).save(path)


def test_a_ds_folder_wins_over_every_look_alike(tmp_path: Path) -> None:
    plain = make_ds(tmp_path / "ds").root
    assert READERS["folder"].detect(plain) and detect_format(plain) == "ds"
    # objects named like mmseg's folders: the DS index still decides
    odd = make_ds(tmp_path / "odd", objects=("img_dir", "ann_dir")).root
    assert READERS["mmseg"].detect(odd) and detect_format(odd) == "ds"


def test_an_mmseg_export_is_read_as_mmseg(tmp_path: Path) -> None:
    ds = make_ds(tmp_path / "ds").root
    out = export(DSFolder.open(ds), tmp_path / "mm", "mmseg")
    assert READERS["folder"].detect(out) and detect_format(out) == "mmseg"


def test_a_coco_folder_is_read_as_coco(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    _image(root / "images" / "a.png")
    (root / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4], "area": 16, "iscrowd": 0,
                         "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]}],
        "categories": [{"id": 1, "name": "dent"}]}), encoding="utf-8")
    assert READERS["folder"].detect(root) and detect_format(root) == "coco"


def test_native_mvtec_and_the_ds_release_are_told_apart(tmp_path: Path) -> None:
    from defectspectrum.data.synth import write_mvtec_layout, write_release_layout

    mvtec = write_mvtec_layout(tmp_path / "mvtec", materials=["metal"], n_defective_per_type=1, n_good=1,
                               n_train_good=1, size=(32, 32))
    release = write_release_layout(tmp_path / "release", materials=["metal"], n_defective_per_type=1, n_good=1,
                                   size=(32, 32))
    assert detect_format(mvtec) == "mvtec" and detect_format(mvtec / "metal") == "mvtec"
    assert detect_format(release) == "ds-release" and detect_format(release / "metal") == "ds-release"


def test_named_layouts_win_over_the_generic_folder(tmp_path: Path) -> None:
    sd = tmp_path / "sd900"
    _image(sd / "Source Images" / "In_1.bmp")
    _mask(sd / "Ground truth" / "In_1.png")
    mt = tmp_path / "mt"
    _image(mt / "MT_Crack" / "Imgs" / "a.jpg")
    _mask(mt / "MT_Crack" / "Imgs" / "a.png")
    dagm = tmp_path / "dagm"
    _image(dagm / "Class1" / "Train" / "0001.PNG")
    vision = tmp_path / "vision"
    _image(vision / "Cable" / "train" / "a.jpg")
    (vision / "Cable" / "train" / "_annotations.coco.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": []}), encoding="utf-8")
    cotton = tmp_path / "cotton"
    _image(cotton / "image" / "00001_0001_Hole.jpg")
    _mask(cotton / "mask" / "00001_0001_Hole_mask.png")
    for root, name in ((sd, "sd900"), (mt, "magnetic-tile"), (dagm, "dagm"), (vision, "vision"),
                       (cotton, "cotton")):
        assert READERS["folder"].detect(root), name
        assert detect_format(root) == name


# -- writer registry ---------------------------------------------------------------------------------------------------


def test_builtin_writers_are_registered_and_load() -> None:
    assert EXPORT_FORMATS == ("coco", "mmseg", "ds-release") == tuple(writer_names())
    for writer in WRITERS.values():
        assert callable(writer.load()) and writer.summary and "\n" not in writer.summary


def test_unknown_writer_lists_the_registered_choices(ds: Path, tmp_path: Path) -> None:
    one_line_error(["data", "export", ds, tmp_path / "o", "--to", "voc"],
                   f"--to 'voc': choose one of {', '.join(writer_names())}")
    code, output = run("data", "export", "--help")
    assert code == 0 and all(name in output for name in writer_names())


def test_export_passes_options_through_and_refuses_foreign_ones(ds: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []

    def fake_writer(folder: DSFolder, dst: Path, polygons: bool = False, suffix: str = ".png") -> Path:
        calls.append({"samples": len(folder), "dst": dst, "polygons": polygons, "suffix": suffix})
        return dst

    monkeypatch.setitem(WRITERS, "fake", Writer("fake", "a test writer", fake_writer))
    folder = DSFolder.open(ds)
    assert export(folder, tmp_path / "f", "fake", polygons=True, suffix=None) == tmp_path / "f"
    assert calls == [{"samples": 2, "dst": tmp_path / "f", "polygons": True, "suffix": ".png"}]
    with pytest.raises(InputError, match=r"^option\(s\) --max-pixels, --palette-file do not apply to --to fake$"):
        export(folder, tmp_path / "g", "fake", max_pixels=10, palette_file="p.json")
    export(folder, tmp_path / "h", "fake", other_flag=False)  # a flag that was not given is no error
    assert len(calls) == 2
    with pytest.raises(InputError, match="do not apply to --to mmseg"):
        export(folder, tmp_path / "i", "mmseg", polygons=True)
    assert not (tmp_path / "i").exists()


def test_register_writer_decorator_and_kwargs_writers(ds: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("defectspectrum.data.export.WRITERS", dict(WRITERS))
    import defectspectrum.data.export as export_module

    @register_writer("anything", "takes every option")
    def anything(folder: DSFolder, dst: Path, **options: object) -> Path:
        (dst / "opts.json").parent.mkdir(parents=True)
        (dst / "opts.json").write_text(json.dumps(options), encoding="utf-8")
        return dst

    assert "anything" in export_module.WRITERS and "anything" not in WRITERS
    out = export_module.export(DSFolder.open(ds), tmp_path / "a", "anything", level=3)
    assert json.loads((out / "opts.json").read_text(encoding="utf-8")) == {"level": 3}


@pytest.mark.parametrize("to", ["coco", "mmseg", "ds-release"])
def test_an_empty_ds_folder_is_refused_by_every_export(tmp_path: Path, to: str) -> None:
    empty = DSFolder.create(tmp_path / "empty", "e", {"plate": ["dent"]}).root
    one_line_error(["data", "export", empty, tmp_path / "out", "--to", to], f"{empty}: holds no samples")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
