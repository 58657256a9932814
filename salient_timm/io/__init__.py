"""Files the library writes and reads: one atomic writer (``atomic``), weight files read with one clear reason
when they cannot be (``weights``), and the training checkpoint's schema (``checkpoint``)."""

from .atomic import TEMP_PREFIX, atomic_copy, atomic_file, atomic_write_text

__all__ = ["atomic_file", "atomic_write_text", "atomic_copy", "TEMP_PREFIX"]
