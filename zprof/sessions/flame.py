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
from zprof.collect import perf, valgrind
from zprof.errors import EXIT_TARGET, PartialRun, ZprofError
from zprof.load.driver import BackgroundLoad, Workload
from zprof.load.probe import Capabilities
from zprof.load.redis_benchmark import RedisBenchmarkLoad, redis_benchmark_path
from zprof.model.common import Note
from zprof.model.flame import CALLGRIND, PERF, FlameRun
from zprof.progress import Reporter
from zprof.server import HOST, Server
from zprof.sessions.target import TargetOptions, build_target, probe_for, run_directory, run_fixed, server_spec

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
    error: ZprofError | None = None
    notes: list[Note] = []
    with run_directory("flame") as run_dir, Server(server_spec(options.target, built.binary, {}), run_dir) as server:
        probed = probe_for(server, options.workloads, options.clients, options.pipeline)
        notes.extend(probed.capabilities.notes)
        load = background_load(server.port, probed.clients, options.workloads, probed.pipeline, probed.capabilities)
        load.start()
        try:
            time.sleep(WARMUP_S)
            progress.status(f"perf record -F {options.frequency} --call-graph {options.call_graph} for "
                            f"{options.duration:g} s...")
            recording = perf.record(server.pid, options.duration, options.frequency, options.call_graph,
                                    out_dir / "perf.data")
        finally:
            load.stop()
        if server.exited_within(0.5):
            error = server.crashed("exited during the recording; the profile covers the time before it")
        elif load.error is not None:
            notes.append(Note("flame.load-stopped", {"reason": load.error}))

    progress.status("Reading the samples...")
    profile = read_profile(recording.data, built.binary, frequency_hz=options.frequency, duration_s=options.duration)
    summary = summarise(profile, options.top)
    run = FlameRun(command=options.label, engine=PERF, target=built.info(options.target.start_command),
                   load=load.description, summary=summary, files=[str(recording.data)],
                   frequency_hz=options.frequency, call_graph=options.call_graph, duration_s=options.duration,
                   notes=notes, complete=error is None, error=error.message if error else None)
    if error is not None:
        raise PartialRun(error, Profiled(run, profile))
    return Profiled(run, profile)


def _callgrind(options: FlameOptions, out_dir: Path, progress: Reporter) -> Profiled:
    """Instruction counts: callgrind runs a fixed number of requests."""
    valgrind.valgrind_path()
    built = build_target(options.target, progress, with_shim=options.shim,
                         extra_args=(f"-Dcpu={valgrind.VALGRIND_CPU}",))
    counts = out_dir / "callgrind.out"
    spec = server_spec(options.target, built.binary, {})
    spec.start_command = valgrind.callgrind_start_command(spec.start_command, counts)
    spec.ready_timeout = max(spec.ready_timeout, valgrind.READY_TIMEOUT_S)
    spec.stop_timeout = 30.0  # callgrind writes its last counts on the way out
    notes: list[Note] = []
    with run_directory("callgrind") as run_dir:
        try:
            with Server(spec, run_dir) as server:
                probed = probe_for(server, options.workloads, options.clients, options.pipeline,
                                   timeout=valgrind.PROBE_TIMEOUT_S)
                notes.extend(probed.capabilities.notes)
                # Count only the measured requests, not start-up and probes.
                valgrind.callgrind_control("-z", server.pid)
                progress.status(f"{options.requests:,} requests under callgrind...")
                result = run_fixed(server, options.workloads, options.requests, probed)
                valgrind.callgrind_control("-d", server.pid)
        except ZprofError as error:
            if error.exit_code == EXIT_TARGET:  # the target failed under valgrind, not the input
                raise valgrind.valgrind_failure(error, run_dir / "server.log",
                                                "profile with perf instead (zprof flame without --engine).") from error
            raise
    dumps = sorted(out_dir.glob("callgrind.out.*"))
    if not dumps:
        raise ZprofError("callgrind wrote no counts", exit_code=EXIT_TARGET)
    profile = build_callgrind_profile(dumps[-1].read_text(errors="replace"), thread=built.project.name)
    description = (f"zprof's driver, {result.requests:,} requests, {probed.clients} client(s), pipeline "
                   f"{probed.pipeline}")
    run = FlameRun(command=options.label, engine=CALLGRIND, target=built.info(options.target.start_command),
                   load=description, summary=summarise(profile, options.top), files=[str(dumps[-1])],
                   requests=result.requests, notes=notes)
    return Profiled(run, profile)


def background_load(port: int, clients: int, workloads: list[Workload], pipeline: int,
                    capabilities: Capabilities) -> BackgroundLoad | RedisBenchmarkLoad:
    """redis-benchmark when the server can take it (it leaves the CPU to the server), else zprof's driver."""
    if redis_benchmark_path() and capabilities.concurrent_clients and capabilities.pipelining:
        return RedisBenchmarkLoad(HOST, port, clients, workloads, pipeline)
    return BackgroundLoad(HOST, port, clients, workloads, pipeline)


def read_profile(data: Path, binary: Path, *, frequency_hz: int, duration_s: float) -> StackProfile:
    """perf.data to a symbolised profile; no samples is an error, never an empty graph."""
    samples = list(parse_perf_script(perf.script(data)))
    if not samples:
        raise ZprofError(
            "perf recorded no samples of the server: it was idle (or exited) during the recording",
            detail="Check that the load reached it (errors, --command), or record for longer.",
            exit_code=EXIT_TARGET,
        )
    with Symbolizer(binary, cache_root() / "symbols") as symbolizer:
        return build_profile(samples, binary, symbolizer, frequency_hz=frequency_hz, duration_s=duration_s)
