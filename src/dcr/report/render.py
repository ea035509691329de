"""A tiny document model (headings, paragraphs, lists, tables, images) rendered to Markdown and to
self-contained HTML (images embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        wrong = [i for i, row in enumerate(self.rows) if len(row) != len(self.header)]
        if wrong:  # a cell without its column header would render under the wrong one, or be dropped
            raise ValueError(f"table {self.title!r}: row {wrong[0]} has {len(self.rows[wrong[0]])} cells for "
                             f"{len(self.header)} columns")


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Image:
    path: Path  # absolute path of the PNG
    caption: str


Block = Table | Heading | Para | Bullets | Image


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], base: Path) -> str:
    """Markdown with images linked relative to ``base`` (the report's directory)."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(b.text + "\n")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items) + "\n")
        elif isinstance(b, Table):
            out.append(f"**{b.title}**\n")
            if not b.rows:
                out.append("_(no rows)_\n")
            else:
                out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
                out.append("|" + "|".join("---" for _ in b.header) + "|")
                out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows)
                out.append("")
            out.extend(f"_{note}_\n" for note in b.notes)
        elif isinstance(b, Image):
            rel = b.path.relative_to(base) if b.path.is_relative_to(base) else b.path
            out.append(f"![{b.caption}]({rel.as_posix()})\n\n_{b.caption}_\n")
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 .3em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px}
th{background:#f0f0f0}td{text-align:right}td:first-child{text-align:left}.note{color:#555;font-size:12px}
img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:13px}"""


def _html_table(t: Table) -> str:
    e = html.escape
    parts = [f"<h4>{e(t.title)}</h4>"]
    if not t.rows:
        parts.append("<p><em>(no rows)</em></p>")
    else:
        parts.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.header) + "</tr></thead><tbody>")
        parts.extend("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in t.rows)
        parts.append("</tbody></table>")
    parts.extend(f'<p class="note">{e(n)}</p>' for n in t.notes)
    return "\n".join(parts)


def to_html(blocks: list[Block], title: str) -> str:
    """A single self-contained HTML page (PNG figures inlined as data URIs)."""
    e = html.escape
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            body.append(_html_table(b))
        elif isinstance(b, Image):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{e(b.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{e(b.caption)}</figcaption></figure>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
