"""zprof report: saved runs rendered again (terminal, Markdown, HTML, JSON), and artifacts that
are refused. The runs under tests/data/runs were saved by real runs on minikv; each renders
to its committed snapshot (regenerate with ZPROF_UPDATE_SNAPSHOTS=1 after a deliberate change)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from zprof import artifact
from zprof.errors import ZprofError

RUNS = Path(__file__).parent / "data" / "runs"
KINDS = ("allocs", "memory", "flame", "bench")


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory no path in the saved runs starts with, so paths print whole."""
    return tmp_path


@pytest.mark.parametrize("kind", KINDS)
def test_a_saved_run_renders_to_its_snapshot(run_zprof, elsewhere, kind):
    done = run_zprof("report", str(RUNS / f"{kind}.json"), cwd=elsewhere, env={"COLUMNS": "140"})
    assert done.returncode == 0, done.output
    snapshot = RUNS / f"{kind}.txt"
    if os.environ.get("ZPROF_UPDATE_SNAPSHOTS"):
        snapshot.write_text(done.stdout)
    assert done.stdout == snapshot.read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_a_saved_run_reads_back_into_the_same_run(kind):
    run = artifact.read(RUNS / f"{kind}.json")
    saved = json.loads((RUNS / f"{kind}.json").read_text())
    again = artifact.to_json(run)
    for key in artifact.ENVELOPE[1:]:
        saved.pop(key), again.pop(key)
    assert again == saved


class _Checked(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.outside: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "br", "img", "path", "rect", "line", "polyline", "use", "stop", "circle"):
            self.open.append(tag)
        self.tables += tag == "table"
        for name, value in attrs:
            if name in ("src", "href") and value and value.startswith(("http:", "https:", "//")):
                self.outside.append(value)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()


@pytest.mark.parametrize("kind", KINDS)
def test_markdown_and_html_say_what_the_terminal_says(run_zprof, elsewhere, kind):
    markdown = run_zprof("report", str(RUNS / f"{kind}.json"), "--format", "md", cwd=elsewhere)
    assert markdown.returncode == 0, markdown.output
    assert markdown.stdout.startswith("# zprof ") and "\n|---" in markdown.stdout
    page = elsewhere / "report.html"
    done = run_zprof("report", str(RUNS / f"{kind}.json"), "--format", "html", "--output", str(page), cwd=elsewhere)
    assert done.returncode == 0 and done.stdout == "", done.output
    checked = _Checked()
    checked.feed(page.read_text())
    assert checked.tables >= 1 and checked.outside == [] and checked.open == []
    # Every table title of the terminal report is in both pages.
    terminal = (RUNS / f"{kind}.txt").read_text()
    for title in ("Per request", "Live bytes by phase", "Hottest functions by self time", "Throughput (req/s"):
        if title in terminal:
            assert title in markdown.stdout and title in page.read_text()


def test_json_format_gives_the_run_as_saved(run_zprof, elsewhere):
    done = run_zprof("report", str(RUNS / "bench.json"), "--format", "json", cwd=elsewhere)
    assert json.loads(done.stdout) == json.loads((RUNS / "bench.json").read_text())


def _directory_of_runs(directory: Path, kinds: tuple[str, ...]) -> None:
    """Each saved run of `kinds` in its own subdirectory, as a command's output directory holds it."""
    for kind in kinds:
        (directory / kind).mkdir()
        (directory / kind / "run.json").write_text((RUNS / f"{kind}.json").read_text())


def test_a_directory_of_runs_renders_each(run_zprof, tmp_path):
    _directory_of_runs(tmp_path, ("allocs", "flame"))
    done = run_zprof("report", str(tmp_path), cwd=tmp_path, env={"COLUMNS": "140"})
    assert done.returncode == 0, done.output
    assert done.stdout == "".join((RUNS / f"{kind}.txt").read_text() for kind in ("allocs", "flame"))


def _saved(kind: str) -> dict:
    return json.loads((RUNS / f"{kind}.json").read_text())


def test_a_run_that_cannot_be_read_is_left_out_of_a_directory_and_named(run_zprof, tmp_path):
    _directory_of_runs(tmp_path, ("allocs", "flame"))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps({**_saved("bench"), "schema": "zprof.bench/3"}))
    done = run_zprof("report", str(tmp_path), cwd=tmp_path, env={"COLUMNS": "140"})
    assert done.returncode == 0, done.output
    assert done.stdout == "".join((RUNS / f"{kind}.txt").read_text() for kind in ("allocs", "flame"))
    named = " ".join(done.stderr.split())
    assert "1 of the 3 runs" in named and "old/run.json was saved in layout zprof.bench/3" in named
    page = run_zprof("report", str(tmp_path), "--format", "md", cwd=tmp_path)
    assert page.returncode == 0, page.output
    assert "Left out: 1 saved run(s)" in page.stdout and "old/run.json" in page.stdout
    assert page.stdout.count("# zprof allocs") == 1 and page.stdout.count("# zprof flame") == 1
    for kind in ("allocs", "flame"):
        (tmp_path / kind / "run.json").write_text("{ cut short")
    nothing = run_zprof("report", str(tmp_path))
    assert nothing.returncode == 2 and "none of the 3 runs" in " ".join(nothing.output.split())
    assert "Traceback" not in nothing.output


@pytest.mark.parametrize("kind", KINDS)
def test_the_printed_schema_accepts_a_saved_run_and_refuses_a_broken_one(run_zprof, tmp_path, kind):
    done = run_zprof("report", "--schema", kind)
    assert done.returncode == 0, done.output
    schema = json.loads(done.stdout)
    jsonschema.validate(_saved(kind), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**_saved(kind), "schema": "zprof.other/1"}, schema)
    written = run_zprof("report", "--schema", kind, "--output", str(tmp_path / "schema.json"))
    assert written.returncode == 0 and json.loads((tmp_path / "schema.json").read_text()) == schema
    both = run_zprof("report", "--schema", kind, str(RUNS / f"{kind}.json"))
    assert both.returncode == 2 and "takes no PATH" in both.output


@pytest.mark.parametrize(("name", "content", "message"), [
    ("not-json", "{ this is not json", "not readable JSON"),
    ("truncated", (RUNS / "allocs.json").read_text()[:2000], "not readable JSON"),
    ("foreign", json.dumps({"schema": "speedscope", "profiles": []}), "its schema is 'speedscope'"),
    ("no-schema", json.dumps([1, 2, 3]), 'it has no "schema" field'),
    ("older", json.dumps({**_saved("allocs"), "schema": "zprof.allocs/1"}), "this zprof reads zprof.allocs/3"),
    ("wrong-type", json.dumps({**_saved("allocs"), "requests": "many"}), "requests: Input should be a valid integer"),
    ("missing", json.dumps({key: value for key, value in _saved("memory").items() if key != "analysis"}),
     "analysis: Field required"),
])
def test_a_corrupt_or_foreign_run_is_refused_clearly(run_zprof, tmp_path, name, content, message):
    path = tmp_path / f"{name}.json"
    path.write_text(content)
    done = run_zprof("report", str(path))
    assert done.returncode == 2, done.output
    assert message in " ".join(done.output.split()) and "Traceback" not in done.output


def test_a_missing_run_is_refused(run_zprof, tmp_path):
    done = run_zprof("report", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "no such file" in done.output
    done = run_zprof("report", str(tmp_path))
    assert done.returncode == 2 and "holds no zprof run" in done.output
    done = run_zprof("report")
    assert done.returncode == 2 and "needs the PATH of a saved run" in done.output


def test_a_run_that_does_not_fit_its_schema_is_never_written(tmp_path):
    run = artifact.read(RUNS / "allocs.json")
    broken = replace(run, requests="many")  # type: ignore[arg-type]
    with pytest.raises((AssertionError, ValueError)):
        artifact.write(broken, tmp_path / "run.json")
    assert not list(tmp_path.iterdir())


def test_the_schema_of_every_kind_is_published():
    for kind in artifact.KINDS:
        schema = artifact.json_schema(kind.name)
        assert schema["properties"]["schema"] == {"const": kind.schema}
        assert schema["type"] == "object"


def test_reading_refuses_what_zprof_cannot_render(tmp_path):
    with pytest.raises(ZprofError, match="not a zprof run"):
        artifact.from_json({"schema": "zprof.nothing/1"}, "test")
