"""The project's exception types.

Library code raises these with a message that names the file and the fix; the CLI turns them
into one line on stderr and exit code 2.
"""

from __future__ import annotations


class DefectSpectrumError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class InputError(DefectSpectrumError):
    """A user-supplied path, file or option is missing, unreadable or malformed."""


class FormatError(InputError):
    """A source data set does not follow the layout its reader expects."""


class SchemaError(InputError):
    """A DS folder's `dataset.json` / `samples.jsonl` is malformed or of an unknown version."""
