"""The README runs as written: every Python and bash block, in order, in one fresh folder, offline.

Each Python block runs in its own interpreter, as a reader who copies that one block would run it, and each
bash block runs in bash with ``set -euo pipefail``, the package's commands first on ``PATH``. ``HOME`` is the
fresh folder (``~/data`` lives there), Hugging Face is offline, and nothing is downloaded. A block may be
preceded by one annotation, ``<!-- readme-test {json} -->``:

| key | meaning |
|---|---|
| ``setup`` | stand-in files the block reads, written first (``SETUPS``) |
| ``replace`` | ``{README text: text run instead}`` for tiny settings or offline stand-ins; each text must occur |
| ``why`` | why the run differs from the text (required with ``replace``) |

Blocks marked ``<!-- ci:main -->`` / ``<!-- ci:test -->`` are the set-up commands ``.ci/run`` runs on a fresh
clone; ``text`` blocks are not code. Any other fence must say ``python``, ``bash`` or ``text``.
"""

import json
import os
import re
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
from fixture_data import digits_as_fashion_mnist, digits_imagefolder, sample_photos, write_fake_cifar

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LANGUAGES = ("python", "bash", "text")
ANNOTATION = re.compile(r"^<!-- readme-test (\{.*\}) -->$")
CI_MARK = re.compile(r"^<!-- ci:(\w+) -->$")

SETUPS: Dict[str, Callable[[Path], object]] = {
    "flowers": lambda home: digits_imagefolder(home / "data" / "flowers"),
    "cifar100": lambda home: write_fake_cifar(home / "data", 100, train=120, test=30),
    "fashion-mnist": lambda home: digits_as_fashion_mnist(home / "fashion-mnist"),
    "photos": lambda home: sample_photos(home, {"photo.jpg": "astronaut", "a.png": "chelsea", "b.png": "coffee"}),
}


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    ci: Optional[str] = None
    options: Dict = field(default_factory=dict)

    def runnable(self) -> str:
        code = self.code
        for text, instead in self.options.get("replace", {}).items():
            code = code.replace(text, instead)
        return code


def readme_blocks(text: str) -> List[Block]:
    """Every fenced block of ``text`` with the marker or annotation on the line before its fence."""
    blocks: List[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            language = lines[i][3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            block = Block(i + 1, language, "\n".join(lines[i + 1 : end]) + "\n")
            before = lines[i - 1] if i else ""
            if CI_MARK.match(before):
                block.ci = CI_MARK.match(before).group(1)
            elif ANNOTATION.match(before):
                block.options = json.loads(ANNOTATION.match(before).group(1))
            blocks.append(block)
            i = end + 1
        else:
            i += 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def test_every_block_says_its_language_and_its_annotation_still_fits():
    problems = []
    for b in BLOCKS:
        where = f"README.md:{b.line}"
        if b.language not in LANGUAGES:
            problems.append(f"{where}: fence language {b.language!r}, expected one of {LANGUAGES}")
        unknown = set(b.options) - {"setup", "replace", "why"}
        if unknown:
            problems.append(f"{where}: unknown annotation keys {sorted(unknown)}")
        if b.options.get("replace") and not b.options.get("why"):
            problems.append(f"{where}: 'replace' without 'why'")
        for text in b.options.get("replace", {}):
            if text not in b.code:
                problems.append(f"{where}: replaced text {text!r} is not in the block")
        for name in b.options.get("setup", []):
            if name not in SETUPS:
                problems.append(f"{where}: unknown setup {name!r} (known: {sorted(SETUPS)})")
    assert not problems, "\n".join(problems)
    assert {b.ci for b in BLOCKS if b.ci} == {"main", "test"}
    assert sum(b.language == "python" for b in BLOCKS) >= 5 and sum(b.language == "bash" for b in BLOCKS) >= 5


def _environment(home: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        PYTHONUSERBASE=site.getuserbase(),  # a --user install still imports with HOME moved
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
    )
    return env


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_readme_runs_as_written_in_order(tmp_path):
    env = _environment(tmp_path)
    ran = []
    for b in BLOCKS:
        if b.ci or b.language == "text":
            continue  # .ci/run runs the set-up blocks on a fresh clone
        for name in b.options.get("setup", []):
            SETUPS[name](tmp_path)
        command = [sys.executable, "-"] if b.language == "python" else ["bash", "-euo", "pipefail", "-s"]
        result = subprocess.run(
            command, input=b.runnable(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        output = (result.stdout + result.stderr)[-4000:]
        assert result.returncode == 0, f"README.md:{b.line} ({b.language}) failed:\n{b.runnable()}\n{output}"
        ran.append(b.line)
    assert len(ran) == sum(1 for b in BLOCKS if not b.ci and b.language != "text")
    # what the blocks promise to leave behind
    for path in ("resnet50.safetensors", "runs/digits/best.pth", "out/hf/config.json", "out/m.onnx", "maps.png"):
        assert (tmp_path / path).is_file(), path
