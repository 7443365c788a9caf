"""A report as plain data: headings, lines of styled text, tables and pictures.

Each kind of run has a builder that turns the run into a Document (what to
say); the renderers turn any Document into a terminal, Markdown or HTML page
(how it looks). A live command and `zprof report` use the same builder and
renderer, so a saved run prints exactly as the run did.

Styles are names the renderers map: "bold", "dim", "red", "bold red",
"yellow", "green", "magenta", "cyan".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Span:
    text: str
    style: str = ""


# One line of text, made of spans; a table cell is text, a span, a line, or several lines.
Line = tuple[Span, ...]
Cell = str | Span | Line | list[Line]


def line(*parts: str | Span) -> Line:
    return tuple(part if isinstance(part, Span) else Span(part) for part in parts)


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1  # 1 for the report's title, 2 for a section


@dataclass(frozen=True)
class Paragraph:
    line: Line


@dataclass(frozen=True)
class Column:
    name: str
    align: str = "left"  # or "right"


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    # Each cell is one or more lines.
    rows: tuple[tuple[tuple[Line, ...], ...], ...]


@dataclass(frozen=True)
class Picture:
    """A picture the run wrote: `path` relative to the artifact's directory."""

    path: str
    caption: str


@dataclass(frozen=True)
class Code:
    """Preformatted text: a code sketch, or commands to copy."""

    text: str
    language: str = ""


Block = Heading | Paragraph | Table | Picture | Code


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Heading(text, level))

    def paragraph(self, *parts: str | Span) -> None:
        self.blocks.append(Paragraph(line(*parts)))

    def table(self, title: str, columns: list[tuple[str, str]], rows: list[list[Cell]]) -> None:
        """`columns` as (name, "left"|"right")."""
        self.blocks.append(Table(title, tuple(Column(name, align) for name, align in columns),
                                 tuple(tuple(_cell(cell) for cell in row) for row in rows)))

    def picture(self, path: str, caption: str) -> None:
        self.blocks.append(Picture(path, caption))

    def code(self, text: str, language: str = "") -> None:
        self.blocks.append(Code(text, language))


def _cell(value: Cell) -> tuple[Line, ...]:
    if isinstance(value, str):
        return (line(value),)
    if isinstance(value, Span):
        return ((value,),)
    if isinstance(value, list):
        return tuple(value)
    return (value,)


def combined(title: str, documents: list[tuple[Path, Document]]) -> Document:
    """Several runs' documents as one; each document's pictures are found from its run's directory."""
    blocks: list[Block] = []
    for directory, document in documents:
        blocks.append(Heading(document.title, 1))
        blocks += _located(document.blocks, directory)
    return Document(title, blocks)


def unreadable_runs(refused: Sequence[Exception]) -> list[Block]:
    """What a report of several runs says first about the runs it had to leave out, so the page does
    not look like all there is."""
    if not refused:
        return []
    return [Paragraph(line(Span(f"Left out: {len(refused)} saved run(s) this zprof cannot read", "yellow"))),
            *(Paragraph(line(f"- {error}")) for error in refused)]


def _located(blocks: list[Block], directory: Path) -> list[Block]:
    return [Picture(str(directory / block.path), block.caption) if isinstance(block, Picture) else block
            for block in blocks]


def plain(text_line: Line) -> str:
    return "".join(span.text for span in text_line)
