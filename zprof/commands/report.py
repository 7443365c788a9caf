"""zprof report PATH: a saved run (or a directory of runs) rendered again, without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import click

from zprof import artifact
from zprof.errors import ZprofError
from zprof.files import write_text_atomically
from zprof.report import document_of
from zprof.report.common import make_console
from zprof.report.document import combined
from zprof.report.render import FORMATS, to_html, to_markdown, to_terminal


@click.command("report")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="terminal", show_default=True,
              help="terminal: as the command printed it; md and html: a page; json: the run itself.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write there instead of printing (md, html, json).")
def report_command(path: Path, output_format: str, output: Path | None) -> None:
    """Print a saved run (run.json, its directory, or a directory of runs) again, as text, Markdown or HTML."""
    files = artifact.runs_under(path)
    if not files:
        raise ZprofError(f"{path} holds no zprof run ({artifact.RUN_FILE})")
    runs = [(file, artifact.read(file)) for file in files]
    if output_format == "terminal":
        if output is not None:
            raise ZprofError("--output is for --format md, html or json; the terminal format prints")
        console = make_console()
        for _, run in runs:
            to_terminal(document_of(run), console)
        return
    if output_format == "json":
        # The runs as saved (each was validated on reading).
        bodies = [json.loads(file.read_text()) for file, _ in runs]
        text = json.dumps(bodies[0] if len(bodies) == 1 else bodies, indent=1) + "\n"
    elif len(runs) == 1:
        # As the run's directory holds it: pictures by their paths there, so a report.md a command wrote
        # into that directory comes out the same, byte for byte.
        (file, run), = runs
        document = document_of(run)
        text = to_markdown(document) if output_format == "md" else to_html(document, file.parent)
    else:
        document = combined(f"zprof report {path}", [(file.parent, document_of(run)) for file, run in runs])
        text = to_markdown(document) if output_format == "md" else to_html(document)
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            write_text_atomically(output, text)
        except OSError as error:
            raise ZprofError(f"cannot write {output}: {error.strerror or error}") from error
