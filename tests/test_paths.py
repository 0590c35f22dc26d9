"""The one sanitiser for written names and the one check for index paths."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from defectspectrum.errors import InputError
from defectspectrum.paths import MAX_NAME, Containment, is_safe_name, output_path, relative_path, safe_name


@pytest.mark.parametrize("text, expected", [
    ("metal/../../../../PWNED", "metal_.._.._.._.._PWNED"), ("..", "unnamed"), (".", "unnamed"), ("", "unnamed"),
    (".hidden", "hidden"), ("a b\tc", "a_b_c"), ("scratch-01.v2", "scratch-01.v2"), ("C:\\x", "C_x"),
    ("über", "ber"), ("a\x00b", "a_b"),
])
def test_safe_name(text: str, expected: str) -> None:
    assert safe_name(text) == expected
    assert is_safe_name(expected)


def test_long_names_are_cut_and_kept_apart() -> None:
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert len(safe_name(a)) <= MAX_NAME and safe_name(a) != safe_name(b)
    assert is_safe_name(safe_name(a))


def test_output_path_refuses_unsafe_parts(tmp_path: Path) -> None:
    assert output_path(tmp_path, "obj", "image", "a.png") == tmp_path / "obj" / "image" / "a.png"
    for part in ("..", "../x", "/etc", "a/b", "", ".x"):
        with pytest.raises(InputError, match="refusing to write"):
            output_path(tmp_path, "obj", part)


@pytest.mark.parametrize("text", ["/etc/passwd", "../secret.png", "a/../../b.png", "C:/x.png", "a\\b.png", "a//b",
                                  "./a.png", "a/./b", "", "a\x00.png", 5, None])
def test_relative_path_refuses_escapes(text: object) -> None:
    with pytest.raises(InputError, match="samples.jsonl:3"):
        relative_path(text, "samples.jsonl:3")


def test_relative_path_accepts_plain_paths() -> None:
    assert relative_path("pill/images/a b.png", "x") == PurePosixPath("pill/images/a b.png")
    assert relative_path("..a/b..png", "x") == PurePosixPath("..a/b..png")


def test_containment_follows_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "obj" / "images").mkdir(parents=True)
    (root / "obj" / "images" / "a.png").write_bytes(b"x")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"s")
    os.symlink(secret, root / "obj" / "images" / "out.png")
    os.symlink(root / "obj" / "images" / "a.png", root / "obj" / "images" / "in.png")
    os.symlink(tmp_path, root / "obj" / "escape")
    check = Containment(root)
    assert check.inside(PurePosixPath("obj/images/a.png"))
    assert check.inside(PurePosixPath("obj/images/in.png"))
    assert check.inside(PurePosixPath("obj/images/missing.png"))
    assert not check.inside(PurePosixPath("obj/images/out.png"))
    assert not check.inside(PurePosixPath("obj/escape/secret.png"))
    with pytest.raises(InputError, match="symbolic link"):
        check.check(PurePosixPath("obj/images/out.png"), "samples.jsonl:1")


def test_containment_of_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "o").mkdir(parents=True)
    (real / "o" / "a.png").write_bytes(b"x")
    os.symlink(real, tmp_path / "link")
    assert Containment(tmp_path / "link").inside(PurePosixPath("o/a.png"))


def test_csv_cells_never_run_as_formulas(tmp_path):
    import csv

    from defectspectrum.io import csv_cell, write_csv_atomic

    assert csv_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("+12") == "+12"  # a number stays a number
    assert csv_cell("-3.5") == "-3.5" and csv_cell("-cmd") == "'-cmd" and csv_cell(7) == 7
    write_csv_atomic(tmp_path / "t.csv", ["class", "n"], [["=1+1", 2], ["scratch", 3]])
    assert list(csv.reader((tmp_path / "t.csv").open())) == [["class", "n"], ["'=1+1", "2"], ["scratch", "3"]]
