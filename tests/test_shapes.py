"""Servers not shaped like minikv, made from minikv at test time: a build.zig without an
optimize option, a server on a fixed port, one that takes its port from the environment,
and one that answers a handful of commands. For each, `zprof init` writes the right
settings, then `zprof allocs SET` (and `zprof flame`, for the shapes that start the server
differently) work with no flags and say what they adapted to.

The shapes are built in Debug (`--optimize Debug`, or a build.zig that says so): what is tested is how zprof
copes with each shape, which the mode does not change, and a Debug build compiles in a third of the time.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import tomllib
from pathlib import Path

import pytest

from tests.conftest import MINIKV, flat_allocs
from zprof.server import free_port

pytestmark = pytest.mark.slow
DEBUG = ("--optimize", "Debug")


def minikv_copy(tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(MINIKV, copy, ignore=shutil.ignore_patterns(".zig-cache", "zig-out", "zprof.toml"))
    return copy


def init(run_zprof, project: Path, *args: str) -> dict:
    done = run_zprof("init", "--project", str(project), *args, cwd=project)
    assert done.returncode == 0, done.output
    text = (project / "zprof.toml").read_text()
    assert text in done.stdout  # shown before it is written
    return tomllib.loads(text)


def allocs_in(run_zprof, project: Path, tmp_path: Path) -> tuple[dict, str]:
    """`zprof allocs SET` with no flags but its output, in the project: its run and what it printed."""
    allocs = run_zprof("allocs", "SET", "--requests", "2000", "--output", str(tmp_path / "allocs"), cwd=project)
    assert allocs.returncode == 0, allocs.output
    return flat_allocs(json.loads((tmp_path / "allocs" / "run.json").read_text())), " ".join(allocs.stdout.split())


def flame_in(run_zprof, project: Path, tmp_path: Path) -> str:
    """`zprof flame --duration 3` with no flags but its output, in the project: what it printed. (The notes on
    the shape are the same sentences in every command's report; flame is run for the shapes that start the
    server differently, where its own start must adapt too.)"""
    flame = run_zprof("flame", "--duration", "3", "--output", str(tmp_path / "flame"), cwd=project)
    assert flame.returncode == 0, flame.output
    return " ".join(flame.stdout.split())


# (mode, optimize_source, what build.zig's `optimize` line becomes)
MODES = {
    "hard-coded": ("Debug", "build.zig", "const optimize: std.builtin.OptimizeMode = .Debug;"),
    "zig-default": ("Debug", "zig default", ""),
}


@pytest.mark.parametrize("shape", MODES)
def test_a_build_zig_without_an_optimize_option(run_zprof, tmp_path, shape):
    mode, source, replacement = MODES[shape]
    project = minikv_copy(tmp_path, shape)
    build_zig = project / "build.zig"
    text = build_zig.read_text().replace("const optimize = b.standardOptimizeOption(.{});", replacement)
    build_zig.write_text(text if replacement else text.replace(".optimize = optimize,", ""))
    settings = init(run_zprof, project)
    assert "optimize" not in settings["target"] and settings["server"]["optimize_source"] == source
    run, allocs = allocs_in(run_zprof, project, tmp_path)
    assert run["target"]["optimize"] == mode and run["target"]["optimize_source"] == source
    said = ("Built in Debug, as its build.zig declares (it has no optimize option)" if source == "build.zig"
            else "Built in Debug, zig build's default (its build.zig declares no optimize option and sets no mode)")
    assert said in allocs
    # A Debug build inlines nothing, and Zig's own backend writes its DWARF differently: each site is
    # still charged to a line of minikv, past std's allocation wrappers.
    for site in run["sites"]:
        if site["allocs_per_request"] >= 0.5:
            assert site["file"] and site["file"].startswith(str(project / "src")), site
    # Asking for a mode the project cannot take is refused clearly.
    done = run_zprof("allocs", "SET", "--optimize", "ReleaseFast", cwd=project)
    assert done.returncode == 2 and "declares no optimize option" in done.output


def test_a_server_on_a_fixed_port(run_zprof, tmp_path):
    project = minikv_copy(tmp_path, "fixed-port")
    port = free_port()
    settings = init(run_zprof, project, "--build-arg", f"-Dfixed-port={port}", *DEBUG)
    assert settings["target"]["port"] == port and "{port}" not in settings["target"]["start_command"]
    assert settings["target"]["build_args"] == [f"-Dfixed-port={port}"] and settings["server"]["fixed_port"]
    run, allocs = allocs_in(run_zprof, project, tmp_path)
    flame = flame_in(run_zprof, project, tmp_path)
    assert run["analysis"]["per_request"]["allocs"] > 0
    for printed in (allocs, flame):
        assert f"The server listens on a fixed port, {port}" in printed
    # Something else on that port: refused before starting, not a hang.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = run_zprof("allocs", "SET", cwd=project)
    assert done.returncode == 2 and f"port {port}" in done.output and "in use" in done.output
    # Without zprof.toml, given a port it ignores: said as soon as it listens elsewhere, not after the ready
    # timeout (a minute here; it takes seconds).
    (project / "zprof.toml").unlink()
    started = time.monotonic()
    done = run_zprof("allocs", "SET", "--build-arg", f"-Dfixed-port={port}", *DEBUG, "--ready-timeout", "60",
                     cwd=project)
    assert done.returncode == 1 and f"listens on 127.0.0.1 port {port}, not on the port zprof gave it" in \
        " ".join(done.output.split()), done.output
    assert time.monotonic() - started < 30


def test_a_server_that_reads_its_port_from_the_environment(run_zprof, tmp_path):
    project = minikv_copy(tmp_path, "port-env")
    settings = init(run_zprof, project, "--build-arg", "-Dport-env=MINIKV_PORT", "--env", "MINIKV_PORT={port}",
                    "--start-command", "{binary}", *DEBUG)
    assert settings["target"]["env"] == {"MINIKV_PORT": "{port}"} and "port" not in settings["target"]
    _, allocs = allocs_in(run_zprof, project, tmp_path)
    flame = flame_in(run_zprof, project, tmp_path)
    for printed in (allocs, flame):
        assert "The server takes its port from the environment (MINIKV_PORT=" in printed


def test_a_server_that_answers_a_handful_of_commands(run_zprof, tmp_path):
    project = minikv_copy(tmp_path, "basic")
    settings = init(run_zprof, project, "--build-arg", "-Dbasic-commands=true", *DEBUG)
    assert settings["workload"]["commands"] == ["SET", "GET"]
    assert {"FLUSHALL", "DBSIZE"} & set(settings["server"]["answers"]) == set()
    run, allocs = allocs_in(run_zprof, project, tmp_path)
    flame = flame_in(run_zprof, project, tmp_path)
    # zprof's own FLUSHALL and DBSIZE are missing: said, not fatal.
    assert run["keys"] is None and run["kept_bytes_per_request"] is None
    assert "FLUSHALL could not show which retained bytes were stored data" in allocs
    assert "2 command(s)" in flame
    # Without zprof.toml's list, the mixed workload drops what the server rejects, and says so.
    (project / "zprof.toml").unlink()
    done = run_zprof("flame", "--duration", "2", "--build-arg", "-Dbasic-commands=true", *DEBUG, "--output",
                     str(tmp_path / "flame-mixed"), cwd=project)
    assert done.returncode == 0, done.output
    assert "The server rejects INCR, LPUSH" in " ".join(done.stdout.split())
    # A command named explicitly that the server rejects still fails clearly.
    done = run_zprof("allocs", "LPUSH", "--build-arg", "-Dbasic-commands=true", *DEBUG, cwd=project)
    assert done.returncode == 2 and "unknown command" in done.output


def test_an_unknown_setting_is_named(run_zprof, tmp_path):
    project = minikv_copy(tmp_path, "typo")
    (project / "zprof.toml").write_text('[target]\nstart_comand = "{binary}"\n')
    done = run_zprof("allocs", "SET", cwd=project)
    assert done.returncode == 2 and "unknown key 'start_comand'" in done.output and "Traceback" not in done.output


def test_init_never_overwrites_a_zprof_toml(run_zprof, tmp_path):
    project = minikv_copy(tmp_path, "kept")
    (project / "zprof.toml").write_text("# mine\n")
    done = run_zprof("init", "--project", str(project))
    assert done.returncode == 2 and "never overwrites" in done.output
    assert (project / "zprof.toml").read_text() == "# mine\n"
