"""JSON documents too big to hold: arrays spooled item by item to files, joined into one object at the end.

```python
images = ArraySpool(folder / ".images.part")
for entry in entries:
    images.append(entry)                       # one compact item, written now
write_object(folder / "doc.json", {"info": info, "images": images, "count": images.count})
```

`write_object` writes the members in order, each plain value as compact JSON and each spool's items
copied in as the array's body (then the spool's file is removed), so memory stays the size of one item
whatever the document's. The text is what `json.dumps(document, ensure_ascii=False, separators=(",", ":"))`
gives for the same document.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import IO, Any


def compact(value: Any) -> str:
    """`value` as compact JSON (no spaces, UTF-8 kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ArraySpool:
    """A JSON array written item by item to `path` (created now), to be joined into a document."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._file: IO[str] | None = self.path.open("w", encoding="utf-8")

    def append(self, item: Any) -> None:
        """Write one item."""
        if self._file is None:
            raise ValueError(f"{self.path}: the spool is closed")
        self._file.write(("," if self.count else "") + compact(item))
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Close and remove the spooled file."""
        self.close()
        self.path.unlink(missing_ok=True)


def write_object(path: Path, members: dict[str, Any]) -> None:
    """Write a JSON object to `path` (a new file: write it inside a staging folder or an `atomic_path`),
    its member values plain JSON or `ArraySpool`s, each spool copied in and removed."""
    with Path(path).open("w", encoding="utf-8") as out:
        out.write("{")
        for number, (key, value) in enumerate(members.items()):
            out.write(("," if number else "") + compact(key) + ":")
            if isinstance(value, ArraySpool):
                value.close()
                out.write("[")
                with value.path.open(encoding="utf-8") as body:
                    shutil.copyfileobj(body, out, 1 << 16)  # 64k characters at a time: memory bounded
                out.write("]")
                value.discard()
            else:
                out.write(compact(value))
        out.write("}\n")
