"""Spooled JSON arrays join into the text json.dumps gives, and leave no spool files behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from defectspectrum.json_stream import ArraySpool, write_object


def test_a_streamed_document_is_the_compact_dump_of_the_same_document(tmp_path: Path) -> None:
    items = [{"id": 1, "name": "Kratzer ä", "bbox": [1.0, 2.5]}, {"id": 2, "nested": {"counts": "x\"y"}}, None]
    spool, empty = ArraySpool(tmp_path / ".a.part"), ArraySpool(tmp_path / ".b.part")
    for item in items:
        spool.append(item)
    assert spool.count == 3
    members = {"info": {"v": "1"}, "items": spool, "none": empty, "tail": [1, 2]}
    write_object(tmp_path / "doc.json", members)
    text = (tmp_path / "doc.json").read_text(encoding="utf-8")
    document = {"info": {"v": "1"}, "items": items, "none": [], "tail": [1, 2]}
    assert text == json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]  # the spools are gone


def test_a_written_spool_takes_no_more_items(tmp_path: Path) -> None:
    spool = ArraySpool(tmp_path / ".a.part")
    write_object(tmp_path / "doc.json", {"a": spool})
    with pytest.raises(ValueError, match="closed"):
        spool.append(1)
