"""Bad input and faults: one clear message, exit code 2 (1 for a target that
failed after it started), never a traceback or a hang, no process left behind."""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import fields

import pytest

from tests.conftest import MINIKV, processes_mentioning, write_project
from zprof.collect.shim_counters import (
    FILE_SIZE,
    LAYER_COUNTS_FIELDS,
    LAYOUT_VERSION,
    MAGIC,
    SITE_COUNTS_FIELDS,
    SITE_IDENTITY_FIELDS,
    Header,
    ShimCounters,
    create_counter_file,
)
from zprof.errors import ZprofError


def assert_clean_failure(result, code: int, *phrases: str) -> None:
    assert result.returncode == code, result.output
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def test_a_directory_without_build_zig(run_zprof, tmp_path):
    result = run_zprof("allocs", "HSET", "--project", str(tmp_path))
    assert_clean_failure(result, 2, "has no build.zig")


def test_a_zig_too_old_for_the_project(run_zprof, tmp_path):
    project = write_project(tmp_path / "p", "pub fn main() void {}\n", minimum="99.0.0")
    result = run_zprof("build", "--project", str(project))
    assert_clean_failure(result, 2, "needs Zig 99.0.0", "0.15.2")


@pytest.mark.slow
def test_a_build_that_fails_shows_the_compiler_errors(run_zprof, tmp_path):
    project = write_project(tmp_path / "p", "pub fn main() void { undefined_name(); }\n")
    result = run_zprof("build", "--project", str(project))
    assert_clean_failure(result, 2, "zig build failed", "undefined_name")


def test_a_dependency_missing_from_the_package_cache(run_zprof, tmp_path):
    dependency = ('.gone = .{ .url = "https://zprof-test.invalid/gone-1.0.0.tar.gz", '
                  '.hash = "gone-1.0.0-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },')
    project = write_project(tmp_path / "p", "pub fn main() void {}\n", zon_extra=dependency)
    result = run_zprof("build", "--project", str(project), timeout=300)
    assert_clean_failure(result, 2, "gone", "not in Zig's package cache", "zig fetch")


@pytest.mark.slow
def test_an_unknown_command_is_bad_input(run_zprof):
    result = run_zprof("allocs", "NOSUCHCMD", "--project", str(MINIKV), "--args", "NOSUCHCMD x")
    assert_clean_failure(result, 2, "unknown command")


def test_a_command_without_default_arguments_asks_for_them(run_zprof):
    result = run_zprof("allocs", "XADD", "--project", str(MINIKV))
    assert_clean_failure(result, 2, "--args")


@pytest.mark.slow
def test_a_server_that_never_answers_ping(run_zprof):
    # A duration of its own (300 s and this process's pid as a fraction), so that another
    # test suite running on the machine at the same time is not taken for a leftover.
    silent = f"sleep 300.{os.getpid()}"
    result = run_zprof("allocs", "GET", "--project", str(MINIKV), "--ready-timeout", "2",
                       "--start-command", f"sh -c 'exec {silent}' zprof-test-silent-server {{binary}} {{port}}")
    assert_clean_failure(result, 1, "did not answer PING")
    assert processes_mentioning(silent) == []


@pytest.mark.slow
def test_a_server_that_crashes_mid_run_is_reported_with_its_log(run_zprof):
    # The wrapper kills the real server a moment after start-up, during the load.
    start = ("sh -c '\"$0\" --port \"$1\" & pid=$!; sleep 1; echo zprof-test-crash; kill -9 $pid; wait' "
             "{binary} {port}")
    result = run_zprof("allocs", "SET", "--project", str(MINIKV), "--requests", "10000000",
                       "--warmup", "0", "--start-command", start, "--clients", "1")
    assert_clean_failure(result, 1, "crashed", "zprof-test-crash")


@pytest.mark.slow
def test_a_port_in_use(run_zprof, taken_port):
    """Still taken after zprof waited for it: the message names the process that holds it (this one)."""
    result = run_zprof("allocs", "GET", "--project", str(MINIKV), "--port", str(taken_port))
    assert_clean_failure(result, 2, f"port {taken_port} on 127.0.0.1 is still in use after 5 s",
                         f"it is held by pid {os.getpid()}", "Stop the process that holds it")


def test_a_counter_file_with_a_foreign_magic_number(tmp_path):
    path = create_counter_file(tmp_path / "counters")
    with open(path, "r+b") as handle:
        handle.write(struct.pack("<Q", 0xDEADBEEF))
    with pytest.raises(ZprofError, match="corrupt or truncated"):
        ShimCounters(path).snapshot()


def test_a_truncated_counter_file(tmp_path):
    path = create_counter_file(tmp_path / "counters")
    # A header the layout check accepts, whose total size is twice the file's.
    values = dict.fromkeys((field.name for field in fields(Header)), 0) | {
        "magic": MAGIC, "version": LAYOUT_VERSION, "total_size": FILE_SIZE * 2, "attached_pid": 1,
        "layer_capacity": 16, "site_capacity": 16384, "site_depth": 8, "live_capacity": 1 << 22,
        "size_class_count": 64, "shard_count": 1, "layer_size": 64, "layer_counts_size": LAYER_COUNTS_FIELDS * 8,
        "site_size": (SITE_IDENTITY_FIELDS + 8) * 8, "site_counts_size": SITE_COUNTS_FIELDS * 8, "live_entry_size": 24,
    }
    header = struct.pack(f"<{len(values)}Q", *values.values())
    with open(path, "r+b") as handle:
        handle.write(header)
    with pytest.raises(ZprofError, match="header says"):
        ShimCounters(path).snapshot()


def test_a_counter_file_nobody_attached_to(tmp_path):
    path = create_counter_file(tmp_path / "counters")
    with pytest.raises(ZprofError, match="never attached"):
        ShimCounters(path).snapshot()


def test_bad_numbers_are_usage_errors(run_zprof):
    result = run_zprof("allocs", "GET", "--project", str(MINIKV), "--requests", "0")
    assert_clean_failure(result, 2, "--requests")


def test_doctor_names_every_tool(run_zprof):
    result = run_zprof("doctor")
    assert result.returncode in (0, 1)
    for tool in ("zig", "perf", "valgrind", "redis-server", "redis-benchmark"):
        assert tool in result.stdout


def test_doctor_checks_what_the_project_needs(run_zprof, tmp_path):
    """minikv as it is builds here; a copy whose build.zig links a library no machine has (a test-only edit) and
    names a dependency that is not in Zig's package cache does not, and doctor names both and exits 1."""
    done = run_zprof("doctor", "--project", str(MINIKV))
    assert "zig 0.15.2 or newer (minimum_zig_version)" in " ".join(done.stdout.split())
    assert "building minikv" in done.stdout and "system library" not in done.stdout
    copy = tmp_path / "minikv"
    shutil.copytree(MINIKV, copy, ignore=shutil.ignore_patterns(".zig-cache", "zig-out"))
    build = copy / "build.zig"
    build.write_text(build.read_text().replace("b.installArtifact(exe);",
                                               'exe.linkSystemLibrary("zprofmissing");\n    b.installArtifact(exe);'))
    zon = copy / "build.zig.zon"
    zon.write_text(zon.read_text().replace(".dependencies = .{},", '.dependencies = .{ .gone = .{ .url = '
                                                                   '"https://example.invalid/gone.tar.gz", .hash = '
                                                                   '"gone-0.0.0-AAAA" } },'))
    done = run_zprof("doctor", "--project", str(copy))
    flat = " ".join(done.stdout.split())
    assert done.returncode == 1, done.output
    assert "To fix system library zprofmissing: install the package with libzprofmissing.so" in flat
    assert "To fix dependency gone: zig fetch https://example.invalid/gone.tar.gz" in flat
    assert "Will not work: building minikv (missing dependency gone, system library zprofmissing)" in flat


def test_doctor_of_a_directory_without_build_zig_is_bad_input(run_zprof, tmp_path):
    assert_clean_failure(run_zprof("doctor", "--project", str(tmp_path)), 2, "has no build.zig")
