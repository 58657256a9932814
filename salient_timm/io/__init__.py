"""Files the library writes and reads: one atomic writer (``atomic``)."""

from .atomic import TEMP_PREFIX, atomic_copy, atomic_file, atomic_write_text

__all__ = ["atomic_file", "atomic_write_text", "atomic_copy", "TEMP_PREFIX"]
