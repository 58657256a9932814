"""Files the library writes and reads: one atomic writer (``atomic``)."""

from .atomic import atomic_file, atomic_write_text

__all__ = ["atomic_file", "atomic_write_text"]
