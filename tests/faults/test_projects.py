"""Faults of the project: a directory that is not a Zig project, a build.zig that does not compile, a Zig
too old for it; `zprof init`, which writes zprof.toml and nothing else, only when asked; a saved run that is
corrupt."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MINIKV, write_project
from tests.faults.conftest import assert_clean, tree_digest

COMMANDS = {
    "allocs": ("allocs", "GET"),
    "flame": ("flame", "--command", "GET", "--duration", "1"),
    "memory": ("memory", "--command", "GET", "--duration", "1"),
    "bench": ("bench", "--commands", "GET", "--trials", "1"),
    "build": ("build",),
    "init": ("init",),
}
WRITES_OUTPUT = {"allocs", "flame", "memory", "bench"}


def output_args(command: str, output: Path) -> tuple[str, ...]:
    return ("--output", str(output)) if command in WRITES_OUTPUT else ()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_directory_that_is_not_a_zig_project(faults, tmp_path, command):
    project = tmp_path / "not-zig"
    project.mkdir()
    (project / "README.md").write_text("no build.zig here\n")
    digest, output = tree_digest(project), tmp_path / "out"
    zprof, done = faults.run(*COMMANDS[command], "--project", str(project), *output_args(command, output))
    assert_clean(zprof, done, 2, "has no build.zig, so it is not a Zig project", project=project, digest=digest,
                 output=output)


@pytest.mark.parametrize("command", ["build", "allocs"])
def test_a_build_zig_that_does_not_compile(faults, tmp_path, command):
    project = write_project(tmp_path / "broken", "pub fn main() void { undefined_name(); }\n")
    digest, output = tree_digest(project), tmp_path / "out"
    zprof, done = faults.run(*COMMANDS[command], "--project", str(project), *output_args(command, output))
    assert_clean(zprof, done, 2, "zig build failed", "undefined_name", project=project, digest=digest,
                 output=output, binaries=("build-exe",))


def test_a_zig_too_old_for_the_project(faults, tmp_path):
    project = write_project(tmp_path / "future", "pub fn main() void {}\n", minimum="99.0.0")
    digest, output = tree_digest(project), tmp_path / "out"
    zprof, done = faults.run("allocs", "GET", "--project", str(project), "--output", str(output))
    assert_clean(zprof, done, 2, "needs Zig 99.0.0 or newer", "0.15.2", project=project, digest=digest,
                 output=output)


@pytest.fixture(scope="module")
def minikv_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A checkout of minikv of the module's own, for zprof init to write into."""
    copy = tmp_path_factory.mktemp("checkout") / "minikv"
    shutil.copytree(MINIKV, copy)
    yield copy
    subprocess.run(["chattr", "-i", str(copy)], check=False)


def test_init_writes_zprof_toml_only_and_only_when_asked(faults, minikv_copy):
    digest = tree_digest(minikv_copy)
    zprof, done = faults.run("init", "--project", str(minikv_copy), "--dry-run")
    assert_clean(zprof, done, 0, "--dry-run: nothing written", project=minikv_copy, digest=digest)

    zprof, done = faults.run("init", "--project", str(minikv_copy))
    written = minikv_copy / "zprof.toml"
    assert_clean(zprof, done, 0, f"Written: {written}")
    text = written.read_text()
    written.unlink()
    assert tree_digest(minikv_copy) == digest, "init wrote something besides zprof.toml"

    written.write_text(text)
    zprof, done = faults.run("init", "--project", str(minikv_copy))
    assert_clean(zprof, done, 2, "exists; zprof init never overwrites it")
    assert written.read_text() == text
    written.unlink()


def test_init_where_it_may_not_write(faults, minikv_copy):
    digest = tree_digest(minikv_copy)
    subprocess.run(["chattr", "+i", str(minikv_copy)], check=True)
    try:
        zprof, done = faults.run("init", "--project", str(minikv_copy))
    finally:
        subprocess.run(["chattr", "-i", str(minikv_copy)], check=True)
    assert_clean(zprof, done, 2, f"cannot write {minikv_copy / 'zprof.toml'}", "Operation not permitted",
                 project=minikv_copy, digest=digest)


def test_a_saved_run_that_is_cut_short(faults, tmp_path):
    saved = Path(__file__).parents[1] / "data" / "runs" / "allocs.json"
    cut = tmp_path / "run.json"
    cut.write_bytes(saved.read_bytes()[:500])
    zprof, done = faults.run("report", str(cut))
    assert_clean(zprof, done, 2, f"{cut} is not a zprof run: it is not readable JSON")
