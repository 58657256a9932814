"""The maps command's error."""

from salient_timm.errors import SalientError

__all__ = ["MapsError"]


class MapsError(SalientError, ValueError):
    """Bad input for the maps command (no gates, unreadable image, non-spatial gates in a picture)."""
