"""Typed config files (QC rules, presets): YAML checked against a pydantic model, every error one
line naming `file:line`.

```python
rules = load_config(Path("rules.yaml"), Rules)   # a Rules instance, or InputError
```

- Syntax errors give the line and column (as `io.read_yaml` does).
- Duplicate keys are refused (PyYAML would silently keep the last one and lose the first rule), and
  so are aliases (`*name`): a few lines of nested aliases can expand to billions of values.
- Schema errors give the first problem's location as a dotted path and the line it is on; a key
  the model does not know (a typo such as `max_aera`) is an error listing the known keys, never
  ignored. Models get that from `StrictModel`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from defectspectrum.errors import InputError
from defectspectrum.io import read_text, yaml_error

MAX_CONFIG_BYTES = 1 << 20  # a rules file is a page of text; anything this large is a mistake

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """A config model that refuses unknown keys, naming the known ones (a typo must not be ignored)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    _origin: tuple[Path, Any] | None = PrivateAttr(default=None)  # (file, YAML node tree), set by load_config

    def where(self, *location: str | int) -> str:
        """`file:line: a.b.c` for a location in the file this model was read from (for errors found after
        loading, e.g. a class name checked against a data set); just the dotted path for a model built in code."""
        dotted = ".".join(str(part) for part in location)
        if self._origin is None:
            return dotted
        path, root = self._origin
        line = line_of(root, location)
        return f"{path}{f':{line}' if line else ''}: {dotted}" if dotted else str(path)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = {name for name, info in cls.model_fields.items()} | {
                info.alias for info in cls.model_fields.values() if info.alias}
            for key in data:
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key", "unknown key {key}; known keys: {known}",
                        {"key": repr(key), "known": ", ".join(sorted(known))})
        return data


def _nodes(path: Path, text: str) -> Any:
    """The YAML node tree of `text` (one document), checked for duplicate keys and aliases."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from exc
    except RecursionError:
        raise InputError(f"{path}: invalid YAML (nested too deeply); fix the file") from None
    finally:
        loader.dispose()
    seen: set[int] = set()
    queue = deque([(root, root.start_mark.line + 1)] if root is not None else [])
    while queue:
        # in document order, so that an alias's second use is the one named; `line`: where the node is used
        node, line = queue.popleft()
        if id(node) in seen:
            raise InputError(f"{path}:{line}: aliases (*name) are not supported here; write the values out")
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, int] = {}
            for key, value in node.value:
                key_line = key.start_mark.line + 1
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        raise InputError(f"{path}:{key_line}: key {key.value!r} appears twice (also line "
                                         f"{keys[key.value]}); keep one")
                    keys[key.value] = key_line
                queue.extend(((key, key_line), (value, key_line)))
        elif isinstance(node, yaml.SequenceNode):
            queue.extend((item, line) for item in node.value)
    return root


def _construct(path: Path, text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from exc
    except (RecursionError, ValueError):
        raise InputError(f"{path}: invalid YAML (nested too deeply, or a number with too many digits); "
                         "fix the file") from None


def line_of(root: Any, location: Sequence[str | int]) -> int | None:
    """The 1-based line of the value at `location` (mapping keys and list indices) in a node tree: as
    deep as the location can be followed (a missing key gives its mapping's line)."""
    import yaml

    node, line = root, None if root is None else root.start_mark.line + 1
    for part in location:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)),
                         None)
            if match is None:
                continue  # a model's own tag in the location (a union member), or a missing key
            key, node = match
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def config_error(message: str, *at: str | int) -> PydanticCustomError:
    """An error for a model validator to raise about the value at `at` (keys and indices below the model
    being validated), so that the message names that value's line."""
    return PydanticCustomError("config", "{message}", {"message": message, "at": at})


def _message(path: Path, root: Any, exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    location: list[str | int] = list(error["loc"])
    if error["type"] == "unknown_key":
        location.append(str(error["ctx"]["key"]).strip("'\""))
    elif error["type"] == "config":
        location.extend(error["ctx"]["at"])
    where = ".".join(str(part) for part in location) or "the file"
    line = line_of(root, location)
    message = error["msg"].removeprefix("Value error, ")
    if not location and error["type"] in ("model_type", "dict_type"):
        message = (f"the top level must be a mapping (`key: value` lines), not {type(error['input']).__name__}; "
                   "see the documented example")
    more = len(exc.errors()) - 1
    tail = f" ({more} more problem{'s' if more > 1 else ''} after this one)" if more else ""
    return f"{path}{f':{line}' if line else ''}: {where}: {message}; fix the file{tail}"


def load_config(path: Path, model: type[M]) -> M:
    """Read the YAML (or JSON) file `path` into `model`, or InputError naming the file and line."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; check the path") from None
    if size > MAX_CONFIG_BYTES:
        raise InputError(f"{path}: {size} bytes is too large for a config file (at most {MAX_CONFIG_BYTES}); "
                         "check the path")
    text = read_text(path)
    root = _nodes(path, text)
    data = _construct(path, text)
    if data is None:
        raise InputError(f"{path}: the file is empty; see the documented example")
    try:
        loaded = model.model_validate(data)
    except ValidationError as exc:
        raise InputError(_message(path, root, exc)) from None
    if isinstance(loaded, StrictModel):
        loaded._origin = (path, root)
    return loaded
