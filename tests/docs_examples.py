"""The example outputs in README.md and docs/: made from real runs on minikv, and checked against what zprof
prints, so that the documentation cannot drift from the program.

An example is a fenced block between two markers in a Markdown file:

    <!-- example: allocs -->
    ```text
    $ zprof allocs HSET --project examples/minikv --server-args '--defect alloc-reply'
    ...what the command prints...
    ```
    <!-- /example -->

Three kinds, by where the text comes from:
- a run (`EXAMPLES`, kind "run"): `make docs` runs the command for real on minikv and keeps its saved run in
  docs/examples/NAME.json; the block is what zprof prints for that run (the same renderer as the live
  command: `zprof report` prints exactly what the command printed, which tests/ checks for every kind);
- help: `zprof COMMAND --help`, as click prints it;
- live (`init --dry-run`, `doctor`): run when checked, compared with numbers and versions masked.

    python -m tests.docs_examples run [NAME ...]   # real runs (minutes); then `write`
    python -m tests.docs_examples write            # the blocks rewritten from the saved runs
    python -m tests.docs_examples check            # exit 1 and a diff when a block is stale

`make docs` is `run` then `write`; tests/test_docs.py is `check`.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from tests.in_process import environment, run_cli

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SAVED = DOCS / "examples"
PAGES = (REPO / "README.md", *sorted(DOCS.glob("*.md")))
# Saved runs name files by absolute path; stored with this in place of the directory the command ran in, and
# rendered as if run in SHOWN_CWD, so that they print the same in any clone (zprof prints paths under the
# working directory relative to it, as a user at SHOWN_CWD would see them).
ROOT_TOKEN = "@ZPROF_CWD@"
SHOWN_CWD = "/home/you/zprof"
# What every example is rendered with: the width zprof prints at when its output is not a terminal.
COLUMNS = "160"
_BLOCK = re.compile(r"(<!-- example: (?P<name>[\w.-]+) -->\n```text\n)(?P<body>.*?)(```\n<!-- /example -->)", re.S)


@dataclass(frozen=True)
class Example:
    name: str
    argv: tuple[str, ...]  # the command shown, as a user types it in the checkout
    kind: str = "run"  # "run", "help" or "live"
    # run: how to show it: "printed" (what the command prints), "summary" (validate's printed summary) or
    # "report.md" (a section of validate's report.md, from this heading to the next of its level).
    show: str = "printed"
    section: str | None = None
    # run: where the command saves its run: "output" (--output DIR: DIR/run.json), "json" (--json FILE) or
    # "baseline" (.zprof/baselines/, as baseline save does).
    saves: str = "output"
    # run: commands run before this one in the same scratch checkout (a baseline for regress).
    before: tuple[tuple[str, ...], ...] = ()
    needs_git: bool = False  # run in a committed copy of minikv (baseline and regress write under .zprof/)
    # run: minikv's defects compiled in after `before` (listed in src/planted.zig): a developer's change.
    plants: tuple[str, ...] = ()
    shown_lines: int | None = None  # a long output cut to its first lines, and said so

    @property
    def shown_command(self) -> str:
        return "$ zprof " + shlex.join(self.argv)


MINIKV = "examples/minikv"
DEMO_DEFECTS = "--defect alloc-reply --defect hot-loop"
BASELINE_SAVE = ("baseline", "save", "--commands", "HSET,ZADD")
VALIDATE = ("validate", "--quick", "--project", MINIKV, "--server-args", DEMO_DEFECTS)
ROOT_CAUSES = ("validate", "--quick", "--project", MINIKV, "--commands", "SET,GET", "--build-arg", "-Dfat-value=true",
               "--server-args", "--fault crash-at-start --defect write-per-part")
EXAMPLES: tuple[Example, ...] = (
    Example("validate-summary", VALIDATE, show="summary"),
    Example("validate-root-causes", ROOT_CAUSES, show="summary"),
    Example("validate-priority", VALIDATE, show="report.md", section="### Priority 1: "),
    Example("validate-summary-md", VALIDATE, show="report.md", section="## Executive Summary"),
    Example("allocs", ("allocs", "HSET", "--project", MINIKV, "--server-args", "--defect alloc-reply")),
    Example("flame", ("flame", "--project", MINIKV, "--server-args", "--defect hot-loop", "--duration", "5")),
    Example("memory-entries", ("memory", "--command", "SET", "--project", MINIKV, "--build-arg", "-Dfat-value=true",
                               "--duration", "4")),
    Example("syscalls", ("syscalls", "GET", "--project", MINIKV, "--server-args", "--defect write-per-part")),
    Example("memory", ("memory", "--command", "SET", "--project", MINIKV, "--server-args", "--defect leak",
                       "--duration", "10")),
    Example("bench", ("bench", "--project", MINIKV, "--commands", "SET,GET,ZADD", "--server-args",
                      "--defect hot-loop")),
    Example("baseline", BASELINE_SAVE, saves="baseline", needs_git=True),
    Example("regress", ("regress", "--budget", "120"), saves="json", needs_git=True, before=(BASELINE_SAVE,),
            plants=("alloc-reply",)),
    Example("init", ("init", "--project", MINIKV, "--dry-run"), kind="live"),
    Example("doctor", ("doctor",), kind="live"),
    *(Example(f"help-{name}", (*name.split("-"), "--help"), kind="help") for name in (
        "validate", "allocs", "flame", "memory", "syscalls", "bench", "compare", "baseline", "baseline-save",
        "baseline-list", "baseline-show", "baseline-history", "regress", "report", "init", "doctor", "build")),
)
BY_NAME = {example.name: example for example in EXAMPLES}


# Running zprof in this process ---------------------------------------------------------------------------
def zprof(argv: tuple[str, ...] | list[str], cwd: Path = REPO, shown_cwd: str | None = None) -> tuple[int, str]:
    """`zprof ARGV` in this process, at the examples' width: its exit code and what it printed on stdout. Without
    $ZIG, as a newcomer runs it: the suite sets it, and `doctor` says where it found Zig."""
    env = {name: value for name, value in os.environ.items() if name != "ZIG"}
    done = run_cli(argv, cwd=cwd, env={**env, "COLUMNS": COLUMNS}, shown_cwd=shown_cwd)
    return done.returncode, done.stdout


# The saved runs -------------------------------------------------------------------------------------------
def saved_run_file(name: str) -> Path:
    return SAVED / f"{name}.json"


def _run_source(example: Example) -> Example:
    """The example whose run this one shows (the validate examples share one run)."""
    return next(other for other in EXAMPLES if other.kind == "run" and other.argv == example.argv)


def _git_copy(directory: Path) -> Path:
    copy = directory / "minikv"
    shutil.copytree(REPO / MINIKV, copy, ignore=shutil.ignore_patterns(".zig-cache", "zig-out", ".zprof",
                                                                        "zprof.toml"))
    identity = {"GIT_AUTHOR_NAME": "docs", "GIT_AUTHOR_EMAIL": "docs@localhost", "GIT_COMMITTER_NAME": "docs",
                "GIT_COMMITTER_EMAIL": "docs@localhost"}
    for args in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", "minikv")):
        subprocess.run(["git", *args], cwd=copy, check=True, env={**os.environ, **identity}, timeout=60,
                       capture_output=True)
    return copy


def record(example: Example) -> Path:
    """Runs the example's command for real and keeps its saved run (run.json), with the checkout's root and
    the scratch directory's path replaced by tokens."""
    with tempfile.TemporaryDirectory(prefix=f"zprof-docs-{example.name}-") as scratch:
        scratch_dir = Path(scratch)
        cwd = _git_copy(scratch_dir) if example.needs_git else REPO
        for argv in example.before:
            code, printed = zprof(argv, cwd)
            if code != 0:
                raise SystemExit(f"{example.name}: zprof {shlex.join(argv)} exited {code}:\n{printed}")
        if example.plants:
            planted = cwd / "src" / "planted.zig"
            listed = ", ".join(f'"{name}"' for name in example.plants)
            planted.write_text(planted.read_text().replace("&.{};", f"&.{{{listed}}};"))
        if example.saves == "output":
            code, printed = zprof((*example.argv, "--output", str(scratch_dir / "out")), cwd)
            run_file = scratch_dir / "out" / "run.json"
        elif example.saves == "json":
            code, printed = zprof((*example.argv, "--json", str(scratch_dir / "run.json")), cwd)
            run_file = scratch_dir / "run.json"
        else:
            code, printed = zprof(example.argv, cwd)
            run_file = next((cwd / ".zprof" / "baselines").glob("*.json"), scratch_dir / "none")
        if not run_file.is_file():
            raise SystemExit(f"{example.name}: zprof {shlex.join(example.argv)} exited {code} and saved no run:\n"
                             f"{printed}")
        text = (run_file.read_text().replace(str(scratch_dir / "out"), f"{cwd}/zprof-out/{example.name}")
                .replace(str(cwd), ROOT_TOKEN).replace(str(REPO), ROOT_TOKEN))
        SAVED.mkdir(parents=True, exist_ok=True)
        target = saved_run_file(example.name)
        target.write_text(text)
        return target


# Rendering ------------------------------------------------------------------------------------------------
def _load(example: Example, directory: Path) -> Path:
    """The saved run, as run in SHOWN_CWD, as a run.json in `directory`."""
    source = saved_run_file(_run_source(example).name)
    if not source.is_file():
        raise FileNotFoundError(f"{source.relative_to(REPO)} is missing: run `make docs`")
    run_file = directory / "run.json"
    run_file.write_text(source.read_text().replace(ROOT_TOKEN, SHOWN_CWD))
    return run_file


def _section(markdown: str, heading: str) -> str:
    lines = markdown.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(heading))
    level = len(heading) - len(heading.lstrip("#"))
    end = next((index for index in range(start + 1, len(lines))
                if lines[index].startswith("#") and len(lines[index]) - len(lines[index].lstrip("#")) <= level),
               len(lines))
    return "\n".join(lines[start:end]).rstrip("\n") + "\n"


def printed(example: Example) -> str:
    """What the example shows under its command line."""
    if example.kind == "help":
        return zprof(example.argv)[1]
    if example.kind == "live":
        return zprof(example.argv)[1].replace(str(REPO), SHOWN_CWD)
    with tempfile.TemporaryDirectory(prefix="zprof-docs-") as scratch:
        run_file = _load(example, Path(scratch))
        if example.show == "summary":
            return _validate_summary(run_file)
        code, text = zprof(("report", str(run_file), *(("--format", "md") if example.show == "report.md" else ())),
                           shown_cwd=SHOWN_CWD)
        if code != 0:
            raise RuntimeError(f"zprof report {saved_run_file(_run_source(example).name)} exited {code}")
        return _section(text, example.section) if example.section else text


def _validate_summary(run_file: Path) -> str:
    """What `zprof validate` prints at the end of the run: its summary, naming the output directory."""
    from zprof import artifact
    from zprof.report.common import make_console
    from zprof.report.render import to_terminal
    from zprof.report.validate import validate_summary

    stdout = io.StringIO()
    with environment({**os.environ, "COLUMNS": COLUMNS}, REPO, SHOWN_CWD), redirect_stdout(stdout):
        to_terminal(validate_summary(artifact.read(run_file), "zprof-out/demo"), make_console())  # type: ignore[arg-type]
    return stdout.getvalue()


def block_body(example: Example) -> str:
    # Without the spaces rich pads lines with: a Markdown editor would strip them.
    lines = [line.rstrip() for line in printed(example).splitlines()]
    if example.shown_lines is not None and len(lines) > example.shown_lines:
        lines = [*lines[:example.shown_lines], f"... ({len(lines) - example.shown_lines} more lines)"]
    return "\n".join([example.shown_command, *lines]).rstrip("\n") + "\n"


# Masking, for live examples -------------------------------------------------------------------------------
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_PATH = re.compile(r"(?:/[\w.@+-]+){2,}/?")


def masked(text: str) -> str:
    """Numbers and absolute paths as placeholders, spaces folded."""
    text = _PATH.sub("<path>", text)
    text = _NUMBER.sub("<n>", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


# The lines of a table rich draws.
_BOX = re.compile(r"[\u2500-\u257f]")


def live_words(text: str) -> list[str]:
    """What a live example must keep: its words, numbers and absolute paths masked, in any order. A table's
    columns are as wide as what they hold, and a path holds the checkout's, so the same words wrap into other
    lines in another checkout (the doctor's Zig row did, in a clone under /tmp/tmp.*/run1)."""
    return sorted(_BOX.sub(" ", masked(text)).split())


# The pages ------------------------------------------------------------------------------------------------
@dataclass
class Stale:
    page: Path
    name: str
    diff: str


@dataclass
class Pages:
    texts: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def read(cls) -> Pages:
        return cls({page: page.read_text() for page in PAGES if page.is_file()})

    def blocks(self) -> Iterator[tuple[Path, re.Match[str]]]:
        for page, text in self.texts.items():
            for match in _BLOCK.finditer(text):
                yield page, match

    def names(self) -> set[str]:
        return {match["name"] for _, match in self.blocks()}


def check() -> list[Stale]:
    """Every example block that differs from what zprof prints now (live ones: beyond numbers and paths)."""
    stale: list[Stale] = []
    cache: dict[str, str] = {}
    for page, match in Pages.read().blocks():
        name = match["name"]
        if name not in BY_NAME:
            stale.append(Stale(page, name, f"no example is named {name} in tests/docs_examples.py"))
            continue
        example = BY_NAME[name]
        expected = cache.setdefault(name, block_body(example))
        have = match["body"]
        same = live_words(have) == live_words(expected) if example.kind == "live" else have == expected
        if not same:
            diff = "".join(difflib.unified_diff(have.splitlines(True), expected.splitlines(True),
                                                f"{page.name} (docs)", f"{name} (zprof now)"))
            stale.append(Stale(page, name, diff))
    return stale


def write() -> list[str]:
    """Rewrites every example block from the saved runs (and help, and live commands); the names written."""
    pages = Pages.read()
    written: list[str] = []
    cache: dict[str, str] = {}
    for page, text in pages.texts.items():
        def fill(match: re.Match[str]) -> str:
            example = BY_NAME[match["name"]]
            written.append(example.name)
            return match.group(1) + cache.setdefault(example.name, block_body(example)) + match.group(4)

        new = _BLOCK.sub(fill, text)
        if new != text:
            page.write_text(new)
    return written


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "write", "check"):
        print(__doc__)
        return 2
    if argv[0] == "run":
        names = argv[1:] or sorted({_run_source(e).name for e in EXAMPLES if e.kind == "run"})
        for name in names:
            print(f"running {name}: {BY_NAME[name].shown_command}", flush=True)
            print(f"  saved {record(BY_NAME[name]).relative_to(REPO)}", flush=True)
        return 0
    if argv[0] == "write":
        print(f"wrote {len(write())} example block(s)")
        return 0
    stale = check()
    for each in stale:
        print(f"{each.page.relative_to(REPO)}: example {each.name} is stale\n{each.diff}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
