"""Write a generated table and keep the hand-written prose below its marker (scripts that regenerate a results file)."""

import os
from typing import List


def write_keeping_prose(path: str, lines: List[str], marker: str) -> None:
    """Write ``lines`` (the generated part, ending with ``marker``) to ``path``, followed by whatever followed
    ``marker`` in the file already there (nothing, or a newline, for a new file)."""
    kept = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if marker in text:
            kept = text.split(marker, 1)[1]
    with open(path, "w") as f:
        f.write("\n".join(lines) + (kept or "\n"))
