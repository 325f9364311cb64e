"""The code blocks of a docs page, so that a test can run them as a reader would paste them."""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass(frozen=True)
class Block:
    """One ``.. code-block::``: its language, its ``:caption:`` (or "") and its text."""

    language: str
    caption: str
    text: str

    def commands(self) -> list[str]:
        """Return the ``$ `` lines of a console block, without the prompt."""
        return [line[2:] for line in self.text.splitlines() if line.startswith("$ ")]

    def output(self) -> str:
        """Return the lines of a console block that are not commands (what the commands print)."""
        return "\n".join(line for line in self.text.splitlines() if not line.startswith("$ "))


def blocks(page: str) -> list[Block]:
    """Return the code blocks of ``docs/<page>.rst`` in order."""
    lines = (DOCS / f"{page}.rst").read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = re.match(r"^\.\. code-block:: *(\S+)", lines[i])
        i += 1
        if not match:
            continue
        caption = ""
        while i < len(lines) and re.match(r"^ +:\w+:", lines[i]):
            option = re.match(r"^ +:caption: *(.*)$", lines[i])
            caption = option.group(1).strip() if option else caption
            i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
            body.append(lines[i])
            i += 1
        found.append(Block(match.group(1), caption, textwrap.dedent("\n".join(body)).strip("\n") + "\n"))
    return found


def by_caption(page: str, caption: str) -> Block:
    """Return the block of ``page`` captioned ``caption``."""
    return next(b for b in blocks(page) if b.caption == caption)


def exports(block: Block) -> dict[str, str]:
    """Return the variables a console block sets with ``export NAME=VALUE`` lines."""
    env = {}
    for command in block.commands():
        if command.startswith("export "):
            name, _, value = command[len("export "):].partition("=")
            env[name] = shlex.split(value)[0]
    return env
