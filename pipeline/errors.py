"""The one base class of the errors a user can fix, and how any exception is said in one line.

Every error that means "this input, file, model or option is unusable, and here is what to do"
derives from VlmemesError (StoreError, ScanError, StageLoadError, ExportError); the CLI catches that
one class, prints its message and exits with code 2. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class VlmemesError(RuntimeError):
    """A problem the user can fix, explained in one line (the CLI prints it and exits 2)."""


class OptionError(VlmemesError, ValueError):
    """An option value a stage cannot work with (e.g. --vlm-backend openai without --vlm-url)."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, or its class name when it has none."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__
