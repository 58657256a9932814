"""One error family: every error salient-timm raises for bad input or an unusable file derives from ``SalientError``.

Both command-line tools print a ``SalientError`` as one line and exit non-zero. Each subclass also
derives from the builtin a caller would expect (``ValueError`` for bad arguments, ``RuntimeError`` for
unusable files or folders), so ``except ValueError`` keeps working.
"""

__all__ = ["SalientError", "RunFolderError", "first_line"]


class SalientError(Exception):
    """Base class of salient-timm's errors (see the module docstring)."""


class RunFolderError(SalientError, RuntimeError):
    """A run folder that cannot be used now: locked by another run, or not a folder."""


def first_line(error: BaseException) -> str:
    """An exception's first non-empty line, for one-line messages; its type name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
