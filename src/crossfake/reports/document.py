"""A report as a list of blocks, rendered to Markdown (figures linked) or one self-contained HTML page.

The two formats come from the same blocks, so they cannot disagree. The HTML page needs nothing else:
the style sheet is inline and every figure is embedded as a ``data:image/png;base64`` URI, so the page
opens from an e-mail attachment, and makes no network request.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crossfake.evaluation.tables import Table, render
from crossfake.utils.errors import CrossfakeError


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    """A paragraph of plain text; ```code``` spans are kept as code."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class TableBlock:
    """A table, titled unless ``titled`` is False, with an optional note under it."""

    table: Table
    note: str | None = None
    titled: bool = True


@dataclass(frozen=True)
class Image:
    """A PNG figure; ``path`` is relative to the report folder."""

    path: str
    caption: str


@dataclass(frozen=True)
class Code:
    """Preformatted text shown verbatim (a config file, a command line)."""

    text: str


Block = Heading | Para | Bullets | TableBlock | Image | Code

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f;
       background: #fff; line-height: 1.45; }
main { max-width: 1400px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
h3 { margin-top: 1.6rem; } h4 { margin: 1.2rem 0 0.4rem; }
table { border-collapse: collapse; margin: 0.4rem 0 0.6rem; font-size: 0.86rem; }
th, td { border: 1px solid #d0d0d7; padding: 0.25rem 0.55rem; vertical-align: top; }
th { background: #f2f2f7; text-align: left; } td.num, th.num { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafc; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0; } figure img { max-width: min(100%, 960px); height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
pre { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.82rem; }
code { background: #f2f2f7; padding: 0 0.2rem; border-radius: 3px; }
.note { font-size: 0.85rem; color: #555; } nav ul { columns: 2; }
"""


def _cells(table: Table) -> list[list[str]]:
    """Cells safe for a Markdown table: no pipe and no line break can end a cell early."""
    return [[c.replace("|", "\\|").replace("\n", " ") for c in row] for row in table.rows]


def to_markdown(blocks: Sequence[Block]) -> str:
    """Markdown (GitHub flavour): tables as pipe tables, figures as links relative to the report folder."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, TableBlock):
            title = f"**{b.table.title}**\n\n" if b.titled else ""
            body = render(b.table.header, _cells(b.table), "markdown", b.table.align)
            out.append(title + body + (f"\n\n{b.note}" if b.note else ""))
        elif isinstance(b, Image):
            out.append(f"![{b.caption}]({b.path})")
        elif isinstance(b, Code):
            fence = "````" if "```" in b.text else "```"
            out.append(f"{fence}\n{b.text.rstrip()}\n{fence}")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _anchor(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    anchor, i = base, 1
    while anchor in taken:
        i += 1
        anchor = f"{base}-{i}"
    taken.add(anchor)
    return anchor


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    if not path.is_file():
        raise CrossfakeError(f"figure {path} is missing; it should have been drawn before the HTML page")
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: Sequence[Block], title: str, root: Path) -> str:
    """One self-contained HTML page; figures are read from ``root`` and embedded, level-2 headings listed
    in a table of contents."""
    taken: set[str] = set()
    anchors = {id(b): _anchor(b.text, taken) for b in blocks if isinstance(b, Heading)}
    toc = [f'<li><a href="#{anchors[id(b)]}">{html.escape(b.text)}</a></li>'
           for b in blocks if isinstance(b, Heading) and b.level == 2]
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            if b.level == 2 and toc:  # the table of contents goes before the first section
                body.append("<nav><ul>\n" + "\n".join(toc) + "\n</ul></nav>")
                toc = []
            body.append(f'<h{b.level} id="{anchors[id(b)]}">{html.escape(b.text)}</h{b.level}>')
        elif isinstance(b, Para):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>\n" + "\n".join(f"<li>{_inline(i)}</li>" for i in b.items) + "\n</ul>")
        elif isinstance(b, TableBlock):
            title_html = f"<h4>{html.escape(b.table.title)}</h4>\n" if b.titled else ""
            table = render(b.table.header, b.table.rows, "html", b.table.align)
            note = f'\n<p class="note">{_inline(b.note)}</p>' if b.note else ""
            body.append(f'{title_html}<div class="scroll">\n{table}\n</div>{note}')
        elif isinstance(b, Image):
            body.append(f'<figure><img src="{data_uri(root / b.path)}" alt="{html.escape(b.caption)}">'
                        f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
        elif isinstance(b, Code):
            body.append(f"<pre>{html.escape(b.text.rstrip())}</pre>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )
