"""What the commands share: the options that choose and start the target, the
output options, and the last step of every command: save the run, print its report."""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from rich.console import Console

from zprof import artifact, registry
from zprof.config import OPTIMIZE_MODES, ProjectConfig, load_config
from zprof.errors import PartialRun, ZprofError
from zprof.load.calibration import MIN_TRIAL_SECONDS
from zprof.progress import LiveProgress
from zprof.report import document_of
from zprof.report.render import to_terminal
from zprof.server import DEFAULT_START_COMMAND, READY_TIMEOUT_S
from zprof.sessions.target import TargetOptions

ResultT = TypeVar("ResultT")
OUTPUT_ROOT = Path("zprof-out")

_TARGET_OPTION_NAMES = tuple(f.name for f in fields(TargetOptions) if f.name not in ("config", "stored"))
# Options the project's zprof.toml [target] table may set, when the flag was not given.
_CONFIGURABLE = ("exe", "build_args", "optimize", "start_command", "port", "env", "ready_timeout")


def load_shape(target: TargetOptions, clients: int, pipeline: int) -> tuple[int, int]:
    """--clients and --pipeline, with zprof.toml's [workload] clients and pipeline for those left at their
    defaults: what `zprof init` found the server takes, so that no probe has to wait to find it again."""
    context, workload = click.get_current_context(), target.config.workload

    def chosen(name: str, value: int) -> int:
        default = context.get_parameter_source(name) in (None, ParameterSource.DEFAULT)
        return int(workload[name]) if name in workload and default else value

    return chosen("clients", clients), chosen("pipeline", pipeline)


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the options that choose, build and start the target; the command receives them
    together as `target: TargetOptions`, with the project's zprof.toml filling in the flags
    left at their defaults."""

    @functools.wraps(command)
    def with_target(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _TARGET_OPTION_NAMES}
        config = load_config(values["project"]) if Path(values["project"]).is_dir() else ProjectConfig()
        context = click.get_current_context()
        for name in _CONFIGURABLE:
            if name in config.target and context.get_parameter_source(name) in (None, ParameterSource.DEFAULT):
                setting = config.target[name]
                values[name] = (tuple(f"{key}={value}" for key, value in setting.items()) if name == "env"
                                else tuple(setting) if name == "build_args" else setting)
        return command(target=TargetOptions(**values, config=config), **kwargs)

    decorators = [
        click.option("--project", default=".", show_default=True, type=click.Path(file_okay=False),
                     help="The Zig project to build (a directory with build.zig)."),
        click.option("--zig", default=None, help="The Zig compiler (default: $ZIG, zig on PATH, the ziglang package)."),
        click.option("--exe", default=None, help="Which installed executable is the server."),
        click.option("--server-args", default="", help="Arguments appended to the server's command line."),
        click.option("--start-command", default=DEFAULT_START_COMMAND, show_default=True,
                     help="How to start the server; {binary} and {port} are filled in ({port} may be left out "
                          "for a server on a fixed --port)."),
        click.option("--port", default=None, type=click.IntRange(1, 65535),
                     help="Port for the server on 127.0.0.1 (default: a free one); for a server on a fixed port, "
                          "that port."),
        click.option("--ready-timeout", default=READY_TIMEOUT_S, show_default=True,
                     type=click.FloatRange(0.5, 3600), help="Seconds to wait for the server to answer PING."),
        click.option("--build-arg", "build_args", multiple=True, metavar="ARG",
                     help="Passed to zig build (repeatable), e.g. --build-arg -Dengine=fast."),
        click.option("--optimize", type=click.Choice(OPTIMIZE_MODES), default=None,
                     help="The build mode (default: ReleaseFast, or what the project declares when it has no "
                          "optimize option)."),
        click.option("--env", multiple=True, metavar="NAME=VALUE",
                     help="Set in the server's environment (repeatable); {port} and {binary} are filled in."),
    ]
    for decorator in reversed(decorators):
        with_target = decorator(with_target)
    return with_target


def min_trial_seconds_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--min-trial-seconds`, for the commands whose trials are timed (zprof.load.calibration)."""
    return click.option(
        "--min-trial-seconds", default=MIN_TRIAL_SECONDS, show_default=True, type=click.FloatRange(0.1, 3600),
        help="Every timed trial lasts at least this long: a shorter one is lengthened (and the report says so), "
             "and no rate comes from a shorter run.")(command)


def redis_persistence_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--redis-persistence`, for the commands that compare with Redis."""
    return click.option(
        "--redis-persistence", type=click.Choice(["off", "aof", "rdb"]), default="off", show_default=True,
        help="How Redis persists while compared: off, its append-only file (aof, fsync once a second) or snapshots "
             "(rdb). Use aof for a target that appends every write to a file: the report says when the target "
             "wrote to disk.")(command)


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--output DIR` (the run's directory, holding run.json) and `--json FILE` (the run saved there too)."""
    command = click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
                           help="Also save the run there (the same JSON as run.json).")(command)
    return click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Directory for the run's files (default: zprof-out/<command>-<time>; must not "
                             "exist).")(command)


@dataclass(frozen=True)
class Outputs:
    """Where a run's files go: its own new directory, and a --json copy of run.json."""

    directory: Path
    json_path: Path | None
    # The first directory on the way to `directory` that zprof made (zprof-out/ the first time): what
    # `discard` removes when it is left empty.
    made_from: Path | None = None

    @classmethod
    def prepare(cls, kind: str, directory: Path | None, json_path: Path | None) -> Outputs:
        """Checks both before anything runs; creates the directory (never an existing one)."""
        if json_path is not None:
            check_writable(json_path.parent, f"--json {json_path}")
        missing = [parent for parent in [(directory or OUTPUT_ROOT).absolute(), *(directory or OUTPUT_ROOT)
                                         .absolute().parents] if not parent.exists()]
        run = registry.current()  # first: a cache zprof cannot use fails before anything is made
        made = fresh_output_dir(directory, kind)
        run.add_output(made.absolute())
        return cls(made, json_path, missing[-1] if missing else None)

    def discard(self) -> None:
        """Removes the run's directory (a run that measured nothing leaves nothing behind), and the
        directories zprof made on the way to it when they are left empty."""
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.made_from is not None:
            for parent in self.directory.absolute().parents:
                if not parent.is_relative_to(self.made_from):
                    break
                with contextlib.suppress(OSError):
                    parent.rmdir()


def check_writable(directory: Path, what: str) -> None:
    """That a file can be made in `directory`, checked before any work by making one."""
    if not directory.is_dir():
        raise ZprofError(f"cannot write {what}: {directory} is not a directory")
    try:
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as error:
        raise ZprofError(f"cannot write {what}: {directory} is not writable ({error.strerror or error})") from error


def fresh_output_dir(path: Path | None, kind: str) -> Path:
    """The run's output directory: an existing one is never reused; the default gets a new name."""
    if path is None:
        stem = OUTPUT_ROOT / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        path, number = stem, 1
        while path.exists():
            number += 1
            path = stem.with_name(f"{stem.name}-{number}")
    elif path.exists():
        raise ZprofError(f"the output directory {path} already exists; zprof never overwrites a previous run",
                         detail="Pass another --output, or remove it first.")
    try:
        path.mkdir(parents=True)
    except OSError as error:
        raise ZprofError(f"cannot create the output directory {path}: {error.strerror or error}") from error
    return path


def measure_and_report(measure: Callable[[LiveProgress], ResultT], outputs: Outputs, console: Console,
                       finish: Callable[[ResultT], Any] = lambda run: run) -> Any:
    """Runs a session with a live progress line, then saves and prints its run; a run cut short
    (PartialRun) is saved and printed too before its failure ends the command. `finish` writes the
    run's own files (pictures, profiles) and returns the run, so that the report can name them."""
    try:
        # On stderr, so that what a command prints on stdout is its report alone.
        with LiveProgress(Console(stderr=True)) as progress:
            result = measure(progress)
    except PartialRun as partial:
        save_and_print(_finished(finish, partial.run, outputs), outputs, console)  # type: ignore[arg-type]
        raise
    except BaseException:
        # Nothing measured (bad input, a server that never started, Ctrl-C): no half-filled run directory.
        outputs.discard()
        raise
    run = _finished(finish, result, outputs)
    save_and_print(run, outputs, console)
    return run


def _finished(finish: Callable[[Any], Any], result: Any, outputs: Outputs) -> Any:
    """The run with its own files written; none of them is left when that fails or is interrupted."""
    try:
        return finish(result)
    except BaseException as error:
        outputs.discard()
        if isinstance(error, OSError):
            raise ZprofError(f"cannot write the run's files in {outputs.directory}: {error.strerror or error}") \
                from error
        raise


def save_and_print(run: Any, outputs: Outputs, console: Console) -> None:
    """Saved first: a report cut short (a closed pipe, Ctrl-C) never loses the run."""
    try:
        artifact.write(run, outputs.directory / artifact.RUN_FILE)
        if outputs.json_path is not None:
            artifact.write(run, outputs.json_path)
    except BaseException as error:
        outputs.discard()  # run.json is the run: a directory without it holds nothing to read
        if isinstance(error, OSError):
            raise ZprofError(f"cannot save the run: {error.strerror or error} ({error.filename})") from error
        raise
    to_terminal(document_of(run), console)
    console.print(f"Run saved to {outputs.directory / artifact.RUN_FILE}"
                  + (f" and {outputs.json_path}" if outputs.json_path else "")
                  + f" (zprof report {outputs.directory} prints it again)", soft_wrap=True)


def suite_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--commands, --requests, --trials, --against and --min-trial-seconds, left None when not given
    (zprof.toml's [baseline] table, or the baseline's own suite, fills them in)."""

    @functools.wraps(command)
    def with_suite(**kwargs: Any) -> Any:
        listed = kwargs.pop("command_list")
        kwargs["commands"] = ([name.strip().upper() for name in listed.split(",") if name.strip()] or None
                              if listed is not None else None)
        if listed is not None and not kwargs["commands"]:
            raise ZprofError("--commands is empty")
        return command(**kwargs)

    decorators = [
        click.option("--commands", "command_list", default=None, metavar="CMD,CMD",
                     help="The suite's commands (default: [baseline] commands in zprof.toml, else SET,GET,HSET,ZADD "
                          "among those the server answers)."),
        click.option("--requests", default=None, type=click.IntRange(1, 10_000_000),
                     help="Requests per command with the shim and under the instruction counter (default 2000)."),
        click.option("--trials", default=None, type=click.IntRange(0, 100),
                     help="Calibrated trials per command for throughput and latency; 0: none (default 5). "
                          "regress beside a kept build runs rounds until each figure is decided instead; 0: none."),
        click.option("--against", type=click.Choice(["redis", "none"]), default=None,
                     help="redis: run redis-server in the same trials, for the ratio to Redis."),
    ]
    with_suite = min_trial_seconds_option(with_suite)
    for decorator in reversed(decorators):
        with_suite = decorator(with_suite)
    return with_suite
