"""zprof syscalls against minikv: the real build, the real server, perf's real system-call tracing; and the
kernel's share of a CPU profile split by system call."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MINIKV
from zprof.analysis.hotspots import kernel_parts
from zprof.analysis.stacks import Frame, ProfileBuilder
from zprof.analysis.syscalls import descriptor_kind, syscall_names
from zprof.builder.toolchain import find_zig

SENDS = ("write", "sendmsg", "sendto", "writev")


@pytest.fixture(scope="session")
def syscalls_run(run_zprof, tmp_path_factory):
    """`zprof syscalls` runs on minikv, each distinct one once per session: (run.json, stdout)."""
    runs: dict[tuple[str, ...], tuple[dict, str]] = {}

    def run(*args: str) -> tuple[dict, str]:
        if args not in runs:
            out = tmp_path_factory.mktemp("syscalls") / "out"
            done = run_zprof("syscalls", *args, "--project", str(MINIKV), "--output", str(out))
            assert done.returncode == 0, done.output
            assert "Traceback" not in done.output
            runs[args] = (json.loads((out / "run.json").read_text()), done.stdout)
        return runs[args]

    return run


def socket_sends(run: dict) -> list[dict]:
    return [row for row in run["rows"] if row["name"] in SENDS and row["target"] == "socket"]


@pytest.mark.slow
@pytest.mark.smoke
def test_a_reply_sent_in_parts_is_three_sends_per_request_each_at_its_line(syscalls_run):
    planted, stdout = syscalls_run("GET", "--requests", "600", "--server-args", "--defect write-per-part")
    sends = socket_sends(planted)
    assert sum(row["per_request"] for row in sends) == pytest.approx(3.0, abs=0.01), stdout
    sites = [site for row in sends for site in row["sites"]]
    assert {site["function"] for site in sites} == {"defects.writeReplyInParts"}
    assert all(site["file"].endswith("examples/minikv/src/defects.zig") for site in sites)
    assert len({site["line"] for site in sites}) == 3  # header, body, terminator: one call each
    assert all(site["per_request"] == pytest.approx(1.0, abs=0.01) for site in sites)
    assert "defects.writeReplyInParts" in stdout and planted["events_lost"] == 0


@pytest.mark.slow
def test_a_request_is_one_receive_and_one_send_without_the_defect(syscalls_run):
    plain, stdout = syscalls_run("GET", "--requests", "600")
    sends = socket_sends(plain)
    assert sum(row["per_request"] for row in sends) == pytest.approx(1.0, abs=0.01), stdout
    assert {site["function"] for row in sends for site in row["sites"]} == {"server.Connection.flush"}
    reads = [row for row in plain["rows"] if row["name"] == "read" and row["target"] == "socket"]
    assert reads and reads[0]["per_request"] == pytest.approx(1.0, abs=0.01)
    assert reads[0]["sites"][0]["file"].endswith("examples/minikv/src/server.zig")
    # minikv makes no call while idle: nothing is subtracted, every count is exact.
    assert plain["idle_per_second"] == 0 and "the counts are exact" in stdout
    assert plain["per_request"] == pytest.approx(2.0, abs=0.01)


@pytest.mark.slow
def test_a_command_the_server_does_not_know_is_bad_input(run_zprof):
    done = run_zprof("syscalls", "NOSUCHCOMMAND", "--project", str(MINIKV), "--requests", "10")
    assert done.returncode == 2, done.output
    assert "Traceback" not in done.output


def test_syscall_names_come_from_the_table_zig_ships():
    names = syscall_names(find_zig(None).lib_dir, "x86_64")
    assert (names[0], names[1], names[46], names[202]) == ("read", "write", "sendmsg", "futex")
    assert syscall_names(find_zig(None).lib_dir, "aarch64")[63] == "read"
    assert syscall_names(find_zig(None).lib_dir, "sparc") == {}


def test_descriptors_are_named_by_what_they_point_at():
    assert descriptor_kind("socket:[48213]") == "socket"
    assert descriptor_kind("pipe:[11]") == "pipe"
    assert descriptor_kind("anon_inode:[eventpoll]") == "eventpoll"
    assert descriptor_kind("/tmp/run/server-1/appendonly.aof") == "appendonly.aof"


def profile_of(*stacks: tuple[list[Frame], int]):
    builder = ProfileBuilder()
    for frames, weight in stacks:
        builder.add("t", frames, weight)
    return builder.build()


def test_the_kernels_share_is_split_by_the_system_call_the_thread_is_in():
    serve = Frame("server.Connection.flush", "/p/src/server.zig", 300)
    wrapper = Frame("os.linux.sendmsg", "/zig/lib/std/os/linux.zig", 10, "std")
    entry = Frame("entry_SYSCALL_64_after_hwframe", kind="kernel")
    kernel_entry = Frame("__x64_sys_sendmsg", kind="kernel")
    back = Frame("exit_to_user_mode_loop", kind="kernel")  # switched out on the way back: no entry frame left
    fault = Frame("asm_exc_page_fault", kind="kernel")
    futex = Frame("os.linux.futex_4arg", "/zig/lib/std/os/linux.zig", 20, "std")
    profile = profile_of(([serve, wrapper, entry, kernel_entry], 30), ([serve, wrapper, entry, back], 20),
                         ([serve, futex, entry, back], 10), ([serve, fault], 5), ([serve], 35))
    parts = {part.cause: part.share for part in kernel_parts(profile)}
    assert parts == {"sendmsg": 0.5, "futex": 0.1, "page faults": 0.05}


@pytest.mark.slow
def test_flame_names_the_system_calls_behind_the_kernels_share(run_zprof, tmp_path):
    out = tmp_path / "out"
    done = run_zprof("flame", "--project", str(MINIKV), "--command", "GET", "--duration", "2", "--output", str(out))
    assert done.returncode == 0, done.output
    parts = {part["cause"]: part["share"] for part in json.loads((out / "run.json").read_text())["summary"][
        "kernel_parts"]}
    assert {"read", "sendmsg"} <= set(parts), parts
    assert "In the kernel, by cause:" in done.stdout
