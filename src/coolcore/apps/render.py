"""A report's blocks rendered as Markdown (relative figure links) and as self-contained
HTML (every figure embedded as a base64 PNG).

A report is a list of blocks::

    ("h", level, text)   ("p", text)   ("table", header, rows)
    ("img", relative_path, caption)   ("code", language, text)
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["render_html", "render_markdown"]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence) -> str:
    """Markdown text of the blocks; images are relative links."""
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "table":
            header, rows = block[1], block[2]
            out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            out.append("|" + "---|" * len(header))
            out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
        elif kind == "img":
            out.append(f"![{Path(block[1]).stem}]({block[1]})\n\n*{block[2]}*")
        elif kind == "code":
            out.append(f"```{block[1]}\n{block[2]}\n```")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def _inline_html(text: str) -> str:
    """Escape text, turning `code` and **bold** into HTML."""
    parts, pos = [], 0
    for m in _INLINE.finditer(text):
        parts.append(html.escape(text[pos : m.start()]))
        if m.group(1) is not None:
            parts.append(f"<code>{html.escape(m.group(1))}</code>")
        else:
            parts.append(f"<strong>{html.escape(m.group(2))}</strong>")
        pos = m.end()
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; }
figure { margin: 1em 0; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def render_html(blocks: Sequence, base: str | os.PathLike) -> str:
    """Self-contained HTML of the blocks: images embedded as base64 PNG (read from ``base``)."""
    base = Path(base)
    title = next((b[2] for b in blocks if b[0] == "h"), "coolcore report").replace("`", "")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{_inline_html(block[2])}</h{block[1]}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "table":
            header, rows = block[1], block[2]
            out.append("<table>")
            if any(h for h in header):
                out.append(
                    "<tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in header) + "</tr>"
                )
            for row in rows:
                out.append("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>")
            out.append("</table>")
        elif kind == "img":
            path = base / block[1]
            try:
                data = base64.b64encode(path.read_bytes()).decode("ascii")
            except OSError:
                out.append(f"<p>(figure {html.escape(block[1])} missing)</p>")
                continue
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[1])}">'
                f"<figcaption>{_inline_html(block[2])}</figcaption></figure>"
            )
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(block[2])}</code></pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
