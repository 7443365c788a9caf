"""One `zprof memory --engine massif` measurement: the target built with the massif variant
of the shim, run under valgrind's massif for a fixed number of requests, its snapshots asked
for through vgdb, and the heap's peak charged to call sites."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zprof.analysis.growth import massif_peak
from zprof.builder import shim
from zprof.collect import massif, process, valgrind
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.load.driver import Workload
from zprof.model.common import Note
from zprof.model.memory import MassifRun, MemoryLoad
from zprof.progress import Reporter
from zprof.sessions.target import (
    TargetOptions,
    build_target,
    probe_for,
    probed_server,
    run_directory,
    run_fixed,
    server_spec,
)

SNAPSHOTS_FILE = "massif.out"


@dataclass(frozen=True)
class MassifOptions:
    target: TargetOptions
    workloads: list[Workload]
    label: str
    requests: int
    clients: int
    pipeline: int


def measure_massif(options: MassifOptions, out_dir: Path, progress: Reporter) -> MassifRun:
    """The run; massif's snapshots are kept in `out_dir` for ms_print."""
    valgrind.valgrind_path()
    massif.vgdb_path()
    built = build_target(options.target, progress, with_shim=True, shim_variant=shim.MASSIF,
                         extra_args=(f"-Dcpu={valgrind.VALGRIND_CPU}",))
    with built.symbolizer() as symbolizer:
        functions = massif.alloc_fns(symbolizer.function_starts())
    bias = 0
    snapshots = out_dir / SNAPSHOTS_FILE
    notes: list[Note] = []
    with run_directory("massif") as run_dir:
        spec = server_spec(options.target, built.binary, {})
        # massif's own file, written only if the target exits; zprof asks for the snapshots instead.
        spec.start_command = massif.massif_start_command(spec.start_command, run_dir / "massif.exit.out", functions)
        spec.ready_timeout = max(spec.ready_timeout, valgrind.READY_TIMEOUT_S)
        try:
            with probed_server(spec, run_dir, notes, lambda server: probe_for(
                    server, options.workloads, options.clients, options.pipeline, timeout=valgrind.PROBE_TIMEOUT_S,
                    explicit=options.label != "mixed")) as (server, probed):
                notes.extend(probed.notes)
                bias = process.load_bias(server.pid, built.binary)
                progress.status(f"{options.requests:,} requests under massif...")
                result = run_fixed(server, probed.workloads, options.requests, probed)
                massif.request_snapshots(server.pid, snapshots)
        except ZprofError as error:
            if error.exit_code == EXIT_TARGET:  # the target failed under valgrind, not the input
                raise valgrind.valgrind_failure(
                    error, run_dir / "server.log",
                    "measure with the shim instead (zprof memory without --engine).") from error
            raise
    with built.symbolizer() as symbolizer:
        peak = massif_peak(massif.parse_massif(snapshots.read_text(errors="replace"), built.roots), symbolizer, bias)
    if peak is None:
        raise ZprofError("massif recorded no heap tree", exit_code=EXIT_TARGET,
                         detail="Was the target built by zprof for massif? Its hooks tell valgrind about each block.")
    return MassifRun(
        command=options.label, target=built.info(options.target.start_command),
        load=MemoryLoad(description=f"zprof's driver, {result.requests:,} requests under massif",
                        clients=probed.clients, pipeline=probed.pipeline, requests=result.requests,
                        errors=result.errors, first_error=result.first_error, seconds=round(result.seconds, 3),
                        interval=0.0),
        peak=peak, notes=notes,
    )
