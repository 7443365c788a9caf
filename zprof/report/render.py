"""Documents rendered for a terminal (rich), as Markdown, and as a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from zprof.report.document import Code, Document, Heading, Line, Paragraph, Picture, Table, plain

FORMATS = ("terminal", "md", "html", "json")


# Terminal ------------------------------------------------------------------------
def _text(lines: tuple[Line, ...] | Line) -> Text:
    if lines and isinstance(lines[0], tuple):
        text = Text()
        for index, each in enumerate(lines):
            if index:
                text.append("\n")
            text.append_text(_text(each))  # type: ignore[arg-type]
        return text
    return Text.assemble(*((span.text, span.style) for span in lines))  # type: ignore[union-attr]


def to_terminal(document: Document, console: Console) -> None:
    for block in document.blocks:
        if isinstance(block, Heading):
            console.print(Text(block.text, style="bold"))
        elif isinstance(block, Paragraph):
            console.print(_text(block.line))
        elif isinstance(block, Table):
            table = RichTable(title=block.title, title_justify="left")
            for column in block.columns:
                table.add_column(column.name, justify=column.align)  # type: ignore[arg-type]
            for row in block.rows:
                table.add_row(*(_text(cell) for cell in row))
            console.print(table)
        elif isinstance(block, Code):
            console.print(Text(block.text, style="dim"))
        # Pictures are files the run wrote; the document names them in a paragraph.


# Markdown ------------------------------------------------------------------------
def _md_line(text_line: Line) -> str:
    parts = []
    for span in text_line:
        text = span.text.replace("|", "\\|")
        if "bold" in span.style and text.strip():
            # Markdown's emphasis must not start or end inside white space.
            stripped = text.strip()
            leading, trailing = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]
            text = f"{leading}**{stripped}**{trailing}"
        parts.append(text)
    return "".join(parts)


def to_markdown(document: Document) -> str:
    out = [f"# {document.title}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            out += ["#" * (block.level + 1) + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [_md_line(block.line), ""]
        elif isinstance(block, Table):
            if block.title:
                out += [f"**{block.title}**", ""]
            out.append("| " + " | ".join(column.name or " " for column in block.columns) + " |")
            out.append("|" + "|".join("---:" if column.align == "right" else "---" for column in block.columns) + "|")
            for row in block.rows:
                out.append("| " + " | ".join("<br>".join(_md_line(each) for each in cell) for cell in row) + " |")
            out.append("")
        elif isinstance(block, Picture):
            out += [f"![{block.caption}]({block.path})", ""]
        elif isinstance(block, Code):
            out += [f"```{block.language}", block.text, "```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


# HTML ----------------------------------------------------------------------------
_STYLE_CLASSES = {"bold": "b", "dim": "dim", "red": "red", "yellow": "yellow", "green": "green", "magenta": "magenta",
                  "cyan": "cyan"}


def _html_line(text_line: Line) -> Markup:
    parts = []
    for span in text_line:
        classes = " ".join(_STYLE_CLASSES[name] for name in span.style.split() if name in _STYLE_CLASSES)
        text = html.escape(span.text)
        parts.append(f'<span class="{classes}">{text}</span>' if classes else text)
    return Markup("".join(parts))


def _embedded(picture: Picture, base_dir: Path | None) -> Markup | None:
    """The picture inside the page: SVG inline, PNG as a data URL; None when the file is gone."""
    path = (base_dir / picture.path) if base_dir else Path(picture.path)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if path.suffix == ".svg":
        text = data.decode("utf-8", errors="replace")
        return Markup(text[text.find("<svg"):] if "<svg" in text else text)
    encoded = base64.b64encode(data).decode()
    return Markup(f'<img alt="{html.escape(picture.caption)}" src="data:image/png;base64,{encoded}">')


_environment = Environment(loader=PackageLoader("zprof.report", "templates"), autoescape=select_autoescape(),
                           trim_blocks=True, lstrip_blocks=True)


def to_html(document: Document, base_dir: Path | None = None) -> str:
    blocks = []
    for block in document.blocks:
        if isinstance(block, Heading):
            blocks.append({"kind": "heading", "level": block.level + 1, "text": block.text})
        elif isinstance(block, Paragraph):
            blocks.append({"kind": "paragraph", "html": _html_line(block.line)})
        elif isinstance(block, Table):
            blocks.append({"kind": "table", "title": block.title, "columns": block.columns,
                           "rows": [[Markup("<br>").join(_html_line(each) for each in cell) for cell in row]
                                    for row in block.rows]})
        elif isinstance(block, Picture):
            blocks.append({"kind": "picture", "caption": block.caption, "path": block.path,
                           "embedded": _embedded(block, base_dir)})
        elif isinstance(block, Code):
            blocks.append({"kind": "code", "text": block.text})
    return _environment.get_template("report.html.j2").render(title=document.title, blocks=blocks)


def document_text(document: Document) -> str:
    """Every line of a document as plain text, for searching it."""
    lines = []
    for block in document.blocks:
        if isinstance(block, Heading):
            lines.append(block.text)
        elif isinstance(block, Paragraph):
            lines.append(plain(block.line))
        elif isinstance(block, Table):
            lines.append(block.title)
            lines += [" ".join(plain(each) for cell in row for each in cell) for row in block.rows]
        elif isinstance(block, Code):
            lines.append(block.text)
    return "\n".join(lines)
