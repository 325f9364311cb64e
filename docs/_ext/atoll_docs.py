"""Sphinx directives that render atoll's own data, so the docs never drift from the code.

``.. atoll-config::`` renders every key of :data:`atoll.config.SCHEMA`; ``.. atoll-benchmarks::`` renders
the tables of ``benchmarks/RESULTS.md`` (or of ``$ATOLL_BENCH_RESULTS``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive

ROOT = Path(__file__).resolve().parents[2]


def _table(header: list[str], rows: list[list[str]], widths: list[int] | None = None) -> nodes.table:
    """Return a docutils table of plain-text cells."""
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    for width in widths or [1] * len(header):
        group += nodes.colspec(colwidth=width)
    thead = nodes.thead()
    group += thead
    thead += _row(header)
    tbody = nodes.tbody()
    group += tbody
    for row in rows:
        # a ragged Markdown row: pad it, or fold surplus cells into the last column
        row = row[:len(header) - 1] + [" | ".join(row[len(header) - 1:])] if len(row) > len(header) else row
        tbody += _row(row + [""] * (len(header) - len(row)))
    return table


def _row(cells: list[str]) -> nodes.row:
    row = nodes.row()
    for text in cells:
        entry = nodes.entry()
        entry += _inline(text)
        row += entry
    return row


def _inline(text: str) -> nodes.paragraph:
    """Return a paragraph where `code` spans of Markdown become literals; the rest stays plain text."""
    para = nodes.paragraph()
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        if i % 2:
            para += nodes.literal(text=part)
        elif part:
            para += nodes.Text(part.replace("**", ""))
    return para


class ConfigKeys(Directive):
    """Render every configuration key: name, type, default, meaning and allowed values."""

    def run(self) -> list[nodes.Node]:
        import yaml

        from atoll.config import SCHEMA, _type_names

        rows = []
        for name, key in SCHEMA.items():
            default = yaml.safe_dump(key.default, default_flow_style=True).strip()
            default = default.removesuffix("...").strip()
            meaning = key.help
            if key.choices:
                meaning += "; one of: " + ", ".join(map(str, key.choices))
            if key.minimum is not None:
                meaning += f"; at least {key.minimum:g}"
            if key.maximum is not None:
                meaning += f"; at most {key.maximum:g}"
            rows.append([f"`{name}`", _type_names(key.types), f"`{default}`", meaning])
        return [_table(["key", "type", "default", "meaning"], rows, [18, 14, 14, 54])]


class Benchmarks(Directive):
    """Render ``benchmarks/RESULTS.md``: headings as rubrics, pipe tables as tables, text as paragraphs."""

    def run(self) -> list[nodes.Node]:
        path = Path(os.environ.get("ATOLL_BENCH_RESULTS", ROOT / "benchmarks" / "RESULTS.md"))
        self.state.document.settings.record_dependencies.add(str(path))
        if not path.exists():
            return [nodes.paragraph(text="No benchmark has been recorded yet (benchmarks/RESULTS.md).")]
        out: list[nodes.Node] = []
        lines = path.read_text(encoding="utf-8").splitlines()
        para: list[str] = []
        table: list[list[str]] = []

        def flush() -> None:
            if para:
                out.append(_inline(" ".join(para)))
                para.clear()
            if table:
                header, rows = table[0], [r for r in table[1:] if not all(re.fullmatch(r":?-+:?", c)
                                                                          for c in r if c)]
                out.append(_table(header, rows) if rows else _inline(" | ".join(header)))
                table.clear()

        for line in lines:
            stripped = line.strip()
            if stripped.startswith("|"):
                if para:
                    out.append(_inline(" ".join(para)))
                    para.clear()
                table.append([c.strip() for c in stripped.strip("|").split("|")])
                continue
            if table:
                flush()
            if not stripped:
                flush()
            elif stripped.startswith("#"):
                flush()
                out.append(nodes.rubric(text=stripped.lstrip("#").strip()))
            else:
                para.append(stripped.lstrip("-* ").strip() if stripped[:2] in ("- ", "* ") else stripped)
                if stripped[:2] in ("- ", "* "):
                    flush()
        flush()
        return out


def setup(app):
    """Register the directives with Sphinx."""
    app.add_directive("atoll-config", ConfigKeys)
    app.add_directive("atoll-benchmarks", Benchmarks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
