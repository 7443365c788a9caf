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
from zprof.report.document import combined, unreadable_runs
from zprof.report.render import FORMATS, to_html, to_markdown, to_terminal


@click.command("report")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="terminal", show_default=True,
              help="terminal: as the command printed it; md and html: a page; json: the run itself.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write there instead of printing (md, html, json).")
@click.option("--schema", "schema_kind", type=click.Choice([kind.name for kind in artifact.KINDS]), default=None,
              help="Print the JSON Schema of a kind of run instead (takes no PATH).")
def report_command(path: Path | None, output_format: str, output: Path | None, schema_kind: str | None) -> None:
    """Print a saved run (run.json, its directory, or a directory of runs) again, as text, Markdown or HTML."""
    if schema_kind is not None:
        if path is not None:
            raise ZprofError("--schema prints the layout of a kind of run and takes no PATH")
        _emit(json.dumps(artifact.json_schema(schema_kind), indent=1) + "\n", output)
        return
    if path is None:
        raise ZprofError("zprof report needs the PATH of a saved run (or --schema KIND)")
    files = artifact.runs_under(path)
    if not files:
        raise ZprofError(f"{path} holds no zprof run ({artifact.RUN_FILE})")
    runs, refused = _read_all(path, files)
    if output_format == "terminal":
        if output is not None:
            raise ZprofError("--output is for --format md, html or json; the terminal format prints")
        console = make_console()
        for _, run in runs:
            to_terminal(document_of(run), console)
    elif output_format == "json":
        # The runs as saved (each was validated on reading).
        bodies = [json.loads(file.read_text()) for file, _ in runs]
        _emit(json.dumps(bodies[0] if len(files) == 1 else bodies, indent=1) + "\n", output)
    elif len(files) == 1:
        # As the run's directory holds it: pictures by their paths there, so a report.md a command wrote
        # into that directory comes out the same, byte for byte.
        (file, run), = runs
        document = document_of(run)
        _emit(to_markdown(document) if output_format == "md" else to_html(document, file.parent), output)
    else:
        document = combined(f"zprof report {path}", [(file.parent, document_of(run)) for file, run in runs])
        document.blocks[:0] = unreadable_runs(refused)
        _emit(to_markdown(document) if output_format == "md" else to_html(document), output)
    if refused:
        click.echo(f"zprof: note: {len(refused)} of the {len(files)} runs under {path} cannot be read and "
                   "are left out:\n" + "\n".join(f"  {error.message}" for error in refused), err=True)


def _read_all(path: Path, files: list[Path]) -> tuple[list[tuple[Path, artifact.Run]], list[ZprofError]]:
    """Every run that reads; in a directory of several, one this zprof cannot read (a run of an older
    layout, a file cut short) is left out and named, rather than hiding all the others."""
    runs: list[tuple[Path, artifact.Run]] = []
    refused: list[ZprofError] = []
    for file in files:
        try:
            runs.append((file, artifact.read(file)))
        except ZprofError as error:
            if len(files) == 1:
                raise
            refused.append(error)
    if not runs:
        first = refused[0]
        raise ZprofError(f"none of the {len(files)} runs under {path} can be read; "
                         f"the first: {first.message}", detail=first.detail)
    return runs, refused


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_text_atomically(output, text)
    except OSError as error:
        raise ZprofError(f"cannot write {output}: {error.strerror or error}") from error
