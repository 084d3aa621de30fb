"""The report's blocks as Markdown, and as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
    "padding:4px 10px;text-align:left}th{background:#f3f3f3}img{max-width:100%}"
    "figcaption{color:#555;font-size:90%;margin-bottom:1.5em}"
)


def markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *rest in blocks:
        if kind == "h1":
            out.append(f"# {rest[0]}")
        elif kind == "h2":
            out.append(f"## {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "table":
            headers, rows = rest
            out.append("| " + " | ".join(headers) + " |")
            out.append("|" + "---|" * len(headers))
            out.extend(
                "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows
            )
        elif kind == "img":
            name, caption = rest
            out.append(f"![{name}](plots/{name})\n\n*{caption}*")
        out.append("")
    return "\n".join(out)


def html_page(blocks: list[tuple], plots_dir: Path, title: str) -> str:
    """One file: every image is embedded as a data URI and nothing is fetched."""
    out = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{STYLE}</style></head><body>",
    ]
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "table":
            headers, rows = rest
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers))
            for row in rows:
                out.append(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                )
            out.append("</table>")
        elif kind == "img":
            name, caption = rest
            data = base64.b64encode((plots_dir / name).read_bytes()).decode()
            out.append(
                f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out)
