"""One `zprof flame` measurement, by one of two engines: perf sampling the server while a
background load runs, or callgrind counting the instructions of a fixed number of requests.
Either gives a symbolised stack profile and its summary."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from zprof.analysis.callgrind import build_callgrind_profile
from zprof.analysis.hotspots import summarise
from zprof.analysis.perf_script import build_profile, parse_perf_script
from zprof.analysis.stacks import StackProfile
from zprof.analysis.symbols import Symbolizer
from zprof.builder.build import cache_root
from zprof.builder.project import SourceRoots
from zprof.collect import perf, valgrind
from zprof.errors import EXIT_TARGET, PartialRun, ZprofError
from zprof.load.driver import BackgroundLoad, Workload
from zprof.load.redis_benchmark import BenchmarkFailed, RedisBenchmarkLoad, redis_benchmark_path
from zprof.model.common import Note
from zprof.model.flame import CALLGRIND, PERF, FlameRun
from zprof.progress import Reporter
from zprof.server import HOST, Server, ServerSpec
from zprof.sessions.target import (
    STOP_GRACE_AFTER_MEASURING_S,
    Probed,
    TargetOptions,
    build_target,
    probe_for,
    probed_server,
    run_directory,
    run_fixed,
    server_spec,
    write_keys_fixed,
)

# A prime, so sampling does not fall into lock-step with periodic work.
DEFAULT_FREQUENCY_HZ = 997
WARMUP_S = 0.5


@dataclass(frozen=True)
class FlameOptions:
    target: TargetOptions
    workloads: list[Workload]
    label: str  # the command, or "mixed"
    clients: int
    pipeline: int
    top: int
    shim: bool  # build with the allocation shim
    engine: str = PERF
    duration: float = 30.0  # perf's recording
    frequency: int = DEFAULT_FREQUENCY_HZ
    call_graph: str = "fp"
    requests: int = 2000  # callgrind's


@dataclass
class Profiled:
    run: FlameRun
    profile: StackProfile


def record_flame(options: FlameOptions, out_dir: Path, progress: Reporter) -> Profiled:
    """The profile and its run; the engine's raw output (perf.data, callgrind.out.*) goes to `out_dir`."""
    if options.engine == CALLGRIND:
        return _callgrind(options, out_dir, progress)
    perf.check_perf()
    built = build_target(options.target, progress, with_shim=options.shim)
    notes: list[Note] = []
    spec = server_spec(options.target, built.binary, {})
    spec.stop_timeout = STOP_GRACE_AFTER_MEASURING_S  # perf has finished with it by then
    with run_directory("flame") as run_dir:
        try:
            recorded = _record_under_load(options, spec, run_dir, out_dir, notes, progress, gentle=False)
        except _LoadBroke as broke:
            # A fresh server: the one the load broke may be left in any state.
            notes.append(Note("flame.gentler-load", {"clients": broke.clients, "pipeline": broke.pipeline,
                                                     "reason": broke.reason}))
            recorded = _record_under_load(options, spec, run_dir, out_dir, notes, progress, gentle=True)
            notes = [note for index, note in enumerate(notes) if note not in notes[:index]]  # started twice

    progress.status("Reading the samples...")
    load, error = recorded.load, recorded.error
    served = (f"zprof's driver completed {load.result.requests:,} requests in {load.result.seconds:.1f} s"
              + (f", then {load.error}" if load.error else "") if isinstance(load, BackgroundLoad) else None)
    profile = read_profile(recorded.recording.data, built.binary, roots=built.roots, frequency_hz=options.frequency,
                           duration_s=options.duration, served=served)
    summary = summarise(profile, options.top)
    run = FlameRun(command=options.label, engine=PERF, target=built.info(options.target.start_command),
                   load=load.description, summary=summary, files=[str(recorded.recording.data)],
                   frequency_hz=options.frequency, call_graph=options.call_graph, duration_s=options.duration,
                   notes=notes, complete=error is None, error=error.message if error else None)
    if error is not None:
        raise PartialRun(error, Profiled(run, profile))
    return Profiled(run, profile)


class _LoadBroke(Exception):
    """The load ended during its warm-up although the probes passed."""

    def __init__(self, reason: str, clients: int, pipeline: int) -> None:
        super().__init__(reason)
        self.reason, self.clients, self.pipeline = reason, clients, pipeline


@dataclass
class _Recorded:
    recording: perf.Recording
    load: BackgroundLoad | RedisBenchmarkLoad
    error: ZprofError | None


def _record_under_load(options: FlameOptions, spec: ServerSpec, run_dir: Path, out_dir: Path, notes: list[Note],
                       progress: Reporter, *, gentle: bool) -> _Recorded:
    """One server, probed, loaded and recorded. `gentle`: zprof's driver with 1 client, one request at a time;
    otherwise _LoadBroke when the load ends in its warm-up (a garbled reply, a dropped connection)."""
    error: ZprofError | None = None

    def probe(server: Server) -> Probed:
        return probe_for(server, options.workloads, options.clients, options.pipeline,
                         explicit=options.label != "mixed")

    with probed_server(spec, run_dir, notes, probe) as (server, probed):
        if not gentle:
            notes.extend(probed.notes)
        load: BackgroundLoad | RedisBenchmarkLoad
        if gentle:
            load = BackgroundLoad(HOST, server.port, 1, probed.workloads, 1)
            load.start()
        else:
            load = start_background_load(server.port, probed, notes)
        try:
            time.sleep(WARMUP_S)
            reason = load.ended()
            if reason is not None and not gentle and (probed.clients, probed.pipeline) != (1, 1):
                raise _LoadBroke(reason, probed.clients, probed.pipeline)
            progress.status(f"perf record -F {options.frequency} --call-graph {options.call_graph} for "
                            f"{options.duration:g} s...")
            recording = perf.record(server.pid, options.duration, options.frequency, options.call_graph,
                                    out_dir / "perf.data")
        finally:
            load.stop()
        # perf stops when the server exits, so a server that died during the recording is gone by now.
        if server.exited_within(0.1):
            error = server.crashed("exited during the recording; the profile covers the time before it")
        elif load.error is not None:
            notes.append(Note("flame.load-stopped", {"reason": load.error}))
        if isinstance(load, BackgroundLoad) and load.result.errors:
            result = load.result
            notes.append(Note("flame.error-replies", {"errors": result.errors, "requests": result.requests,
                                                      "first_error": result.first_error}))
    return _Recorded(recording, load, error)


def _callgrind(options: FlameOptions, out_dir: Path, progress: Reporter) -> Profiled:
    """Instruction counts: callgrind runs a fixed number of requests."""
    valgrind.valgrind_path()
    built = build_target(options.target, progress, with_shim=options.shim,
                         extra_args=(f"-Dcpu={valgrind.VALGRIND_CPU}",))
    counts = out_dir / "callgrind.out"
    spec = server_spec(options.target, built.binary, {})
    spec.start_command = valgrind.callgrind_start_command(spec.start_command, counts)
    spec.ready_timeout = max(spec.ready_timeout, valgrind.READY_TIMEOUT_S)
    # A start under valgrind takes seconds, and a program that crashes under it does so every time: fewer tries.
    spec.start_attempts = valgrind.START_ATTEMPTS
    spec.stop_timeout = 30.0  # callgrind writes its last counts on the way out
    notes: list[Note] = []
    with run_directory("callgrind") as run_dir:
        try:
            with probed_server(spec, run_dir, notes, lambda server: probe_for(
                    server, options.workloads, options.clients, options.pipeline, timeout=valgrind.PROBE_TIMEOUT_S,
                    explicit=options.label != "mixed")) as (server, probed):
                notes.extend(probed.notes)
                for workload in probed.workloads:  # a read's hits: its keys, written before the count starts
                    write_keys_fixed(server, workload, probed)
                # Count only the measured requests, not start-up and probes.
                valgrind.callgrind_control("-z", server.pid)
                progress.status(f"{options.requests:,} requests under callgrind...")
                result = run_fixed(server, probed.workloads, options.requests, probed)
                valgrind.callgrind_control("-d", server.pid)
        except ZprofError as error:
            if error.exit_code == EXIT_TARGET:  # the target failed under valgrind, not the input
                raise valgrind.valgrind_failure(error, run_dir / "server.log",
                                                "profile with perf instead (zprof flame without --engine).") from error
            raise
    dumps = sorted(out_dir.glob("callgrind.out.*"))
    if not dumps:
        raise ZprofError("callgrind wrote no counts", exit_code=EXIT_TARGET)
    profile = build_callgrind_profile(dumps[-1].read_text(errors="replace"), thread=built.project.name,
                                      source_roots=built.roots)
    description = (f"zprof's driver, {result.requests:,} requests, {probed.clients} client(s), pipeline "
                   f"{probed.pipeline}")
    run = FlameRun(command=options.label, engine=CALLGRIND, target=built.info(options.target.start_command),
                   load=description, summary=summarise(profile, options.top), files=[str(dumps[-1])],
                   requests=result.requests, notes=notes)
    return Profiled(run, profile)


def start_background_load(port: int, probed: Probed, notes: list[Note]) -> BackgroundLoad | RedisBenchmarkLoad:
    """redis-benchmark when the server can take it (it leaves the CPU to the server), else zprof's driver,
    which also takes every load of one client. redis-benchmark stops at the first error reply, so a server
    that gives one gets zprof's driver, which counts them."""
    capabilities = probed.capabilities
    # Only a load of several clients was probed for them; redis-benchmark opens a connection of its own
    # besides its clients, which a server that serves one connection at a time never answers.
    if redis_benchmark_path() and probed.clients > 1 and capabilities.concurrent_clients and capabilities.pipelining:
        benchmark = RedisBenchmarkLoad(HOST, port, probed.clients, probed.workloads, probed.pipeline)
        try:
            benchmark.start()
            return benchmark
        except BenchmarkFailed as failure:
            if failure.server_error is None:
                raise _LoadBroke(str(failure), probed.clients, probed.pipeline) from failure
            notes.append(Note("flame.driver-for-errors", {"error": failure.server_error}))
    driver = BackgroundLoad(HOST, port, probed.clients, probed.workloads, probed.pipeline)
    driver.start()
    return driver


def read_profile(data: Path, binary: Path, *, frequency_hz: int, duration_s: float, served: str | None = None,
                 roots: SourceRoots | None = None) -> StackProfile:
    """perf.data to a symbolised profile; no samples is an error, never an empty graph."""
    samples = list(parse_perf_script(perf.script(data)))
    if not samples:
        raise ZprofError(
            "perf recorded no samples of the server: it was idle (or exited) during the recording"
            + (f" ({served})" if served else ""),
            detail="Check that the load reached it (errors, --command), or record for longer: a server that waits "
                   "more than it computes gets few samples.",
            exit_code=EXIT_TARGET,
        )
    with Symbolizer(binary, cache_root() / "symbols", roots=roots) as symbolizer:
        return build_profile(samples, binary, symbolizer, frequency_hz=frequency_hz, duration_s=duration_s)
