"""What every command that builds and runs the target shares: its options,
the build with a progress spinner, and the server it starts."""

from __future__ import annotations

import functools
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from zprof.errors import ZprofError
from zprof.load.calibration import MIN_TRIAL_SECONDS
from zprof.server import DEFAULT_START_COMMAND, READY_TIMEOUT_S, ServerSpec
from zprof.target import shim
from zprof.target.build import BuildRequest, BuildResult, build, cache_root
from zprof.target.project import ZigProject, load_project
from zprof.target.toolchain import find_zig


@dataclass(frozen=True)
class TargetOptions:
    project: str
    zig: str | None
    exe: str | None
    server_args: str
    start_command: str
    port: int | None
    ready_timeout: float


_OPTION_NAMES = tuple(f.name for f in fields(TargetOptions))


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the options that choose, build and start the target; the command
    receives them together as `target: TargetOptions`."""

    @functools.wraps(command)
    def with_target(**kwargs: Any) -> Any:
        target = TargetOptions(**{name: kwargs.pop(name) for name in _OPTION_NAMES})
        return command(target=target, **kwargs)

    decorators = [
        click.option("--project", default=".", show_default=True, type=click.Path(file_okay=False),
                     help="The Zig project to build (a directory with build.zig)."),
        click.option("--zig", default=None, help="The Zig compiler (default: $ZIG, zig on PATH, the ziglang package)."),
        click.option("--exe", default=None, help="Which installed executable is the server."),
        click.option("--server-args", default="", help="Arguments appended to the server's command line."),
        click.option("--start-command", default=DEFAULT_START_COMMAND, show_default=True,
                     help="How to start the server; {binary} and {port} are filled in."),
        click.option("--port", default=None, type=click.IntRange(1, 65535),
                     help="Port for the server on 127.0.0.1 (default: a free one)."),
        click.option("--ready-timeout", default=READY_TIMEOUT_S, show_default=True,
                     type=click.FloatRange(0.5, 3600), help="Seconds to wait for the server to answer PING."),
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


def build_target(options: TargetOptions, console: Console, *, with_shim: bool, shim_variant: str = shim.COUNTING,
                 extra_args: tuple[str, ...] = ()) -> tuple[ZigProject, BuildResult]:
    project = load_project(options.project)
    zig = find_zig(options.zig)
    request = BuildRequest(project=project, zig=zig, with_shim=with_shim, shim_variant=shim_variant, exe=options.exe,
                           extra_args=extra_args)
    shim_name = f" and the zprof shim ({shim_variant})" if with_shim else ""
    with console.status(f"Building {project.name} with Zig {zig.version}{shim_name}...", spinner="dots"):
        result = build(request)
    return project, result


def server_spec(options: TargetOptions, binary: Path, env: dict[str, str]) -> ServerSpec:
    if "{binary}" not in options.start_command or "{port}" not in options.start_command:
        raise ZprofError("--start-command must contain {binary} and {port}")
    try:
        extra = shlex.split(options.server_args)
    except ValueError as error:
        raise ZprofError(f"cannot parse --server-args: {error}") from error
    return ServerSpec(binary=binary, start_command=options.start_command, extra_args=extra, env=env,
                      port=options.port, ready_timeout=options.ready_timeout)


@contextmanager
def run_directory(kind: str) -> Iterator[Path]:
    """A private directory for one run's server, log and counters; removed afterwards."""
    runs = cache_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=runs))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def default_output(kind: str) -> Path:
    return Path("zprof-out") / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def fresh_output_dir(path: Path | None, kind: str) -> Path:
    """The run's output directory; an existing one is never overwritten."""
    output = path or default_output(kind)
    if output.exists():
        raise ZprofError(f"the output directory {output} already exists; zprof never overwrites a previous run",
                         detail="Pass another --output, or remove it first.")
    output.mkdir(parents=True)
    return output
