"""The sentences for every note a run can carry (`zprof.model.common.Note`): what zprof
adapted to, and the limits of what it measured. One place, so that the wording is
consistent and the codes stay stable for tools that read artifacts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zprof.collect.crash import CrashStack
from zprof.model.common import Note


def _names(values: list[str]) -> str:
    return ", ".join(values)


def _unsupported(commands: dict[str, str]) -> str:
    """{"MSET": "unsupported (answers +OK without doing it)"} as "MSET unsupported (answers +OK without doing it)"."""
    return "; ".join(f"{command} {why}" for command, why in commands.items())


def _lengthened(v: dict[str, Any]) -> str:
    runs = "; ".join(f"{command} on {server}: {requests:,}" for command, server, requests in v["runs"])
    return (f"trials start from {v['requests']:,} requests (--requests); where that would have lasted under "
            f"{v['seconds']:g} s, too short for a rate to mean anything, zprof lengthened the run to the requests "
            f"that last at least that long, in every trial ({runs}).")


def _build_mode(v: dict[str, Any]) -> str:
    why = {"build.zig": "as its build.zig declares (it has no optimize option)",
           "zig default": "zig build's default (its build.zig declares no optimize option and sets no mode)",
           "requested": "as requested"}[v["source"]]
    meaning = {
        "Debug": "allocation counts hold, but the CPU time and throughput of a Debug build are not representative",
        "ReleaseSafe": "an optimised build that keeps its runtime safety checks, which cost some speed",
        "ReleaseSmall": "a build optimised for size rather than speed",
    }.get(v["mode"], "its CPU time and throughput are those of an optimised build")
    return f"Built in {v['mode']}, {why}: {meaning}."


def _per_batch(v: dict[str, Any]) -> str:
    if v["all"]:
        return (f"All latencies from zprof's driver are per pipelined batch of {v['pipeline']} requests, not per "
                "request.")
    what = "p99.9" + (" (and every latency of MIX)" if v["mix"] else "")
    return f"{what} from zprof's driver is per pipelined batch of {v['pipeline']} requests, not per request."


_FAULTS = {"one-connection": "serves one connection at a time",
           "no-pipelining": "answers only the first of pipelined commands"}

_SENTENCES: dict[str, Callable[[dict[str, Any]], str]] = {
    "probe.one-connection": lambda v: (
        f"The server did not answer {v['clients']} connections at once within {v['timeout']:.0f} s"
        + (" (it answered the first while the others waited)" if v.get("first_answered") else
           " (not even the first answered in time)" if "first_answered" in v else "")
        + "; zprof drives it with 1 client."),
    "probe.no-pipelining": lambda v: (f"The server did not answer a pipelined burst of {v['burst']} commands; zprof "
                                      "sends one command at a time."),
    "target.no-debug-info": lambda v: "The binary has no DWARF debug info: call sites show function names only.",
    "allocs.no-flushall": lambda v: (f"FLUSHALL could not show which retained bytes were stored data ({v['reason']}): "
                                     "growth flags then count stored data too."),
    "memory.phases-lengthened": lambda v: (f"Each load phase lasted {v['seconds']:g} s rather than {v['asked']:g} s "
                                           f"(--duration over {v['phases']} phases), so that none is shorter than "
                                           "--min-trial-seconds or two intervals."),
    "flame.unknown-frames": lambda v: (f"{v['share']:.0%} of the samples have [unknown] frames inside their stack, "
                                       "not only at its root (code without frame pointers breaks the chain); try "
                                       "--call-graph dwarf."),
    "validate.quick": lambda v: (f"--quick: fewer requests, {v.get('trials', 2)} trials of at least "
                                 f"{v.get('seconds', 0.5):g} s per command and server, no p99.9, shorter recordings "
                                 f"and {v.get('keys', 10_000):,} keys: a first look; run without --quick before a "
                                 "release."),
    "flame.load-stopped": lambda v: f"The load stopped early: {v['reason']}",
    "flame.driver-for-errors": lambda v: (f"redis-benchmark stopped at an error reply from the server ({v['error']}); "
                                          "zprof's driver, which counts error replies and goes on, carried the load."),
    "flame.gentler-load": lambda v: (f"The load of {v['clients']} client(s) with pipeline {v['pipeline']} ended within "
                                     f"its warm-up ({v['reason']}) although the probes passed: the server may "
                                     "mishandle concurrent or pipelined requests. zprof profiled it under 1 client, "
                                     "one request at a time."),
    "flame.error-replies": lambda v: (f"{v['errors']:,} of the {v['requests']:,} requests during the recording got an "
                                      f"error reply (the first: {v['first_error']}): the profile includes their "
                                      "error paths."),
    "compare.stopped": lambda v: (f"The rounds stopped after {v['rounds']} ("
                                  + (f"the budget, --budget {v['budget']:g} s, was spent" if v["reason"] == "budget"
                                     else f"all {v['planned']} rounds were done")
                                  + ") with figures undecided."),
    "compare.no-instructions": lambda v: (f"Instructions could not be counted ({v['reason']}): the CPU signal here is "
                                          "the noisy one, throughput and latency"
                                          + (", and the rounds were planned for it." if v["rounds"] else
                                             ", which this check did not measure (no rounds).")),
    "compare.no-rounds": lambda v: ("No rounds were run (--trials 0): only the exact figures were compared"
                                    + (", instructions included." if v["instructions"] else
                                       "; with no instruction count either, the CPU was not checked, so the "
                                       "outcome cannot be a pass. Run it with rounds (without --trials 0) for that.")),
    "server.port-waited": lambda v: (f"Port {v['port']} was still taken when the server was to start (the one "
                                     f"before it keeps its socket a moment after it exits); zprof waited "
                                     f"{v['seconds']:g} s for it to come free."),
    "server.start-crashes": lambda v: (f"{v['server']} crashed during start-up (before it answered PING, or under "
                                       f"zprof's first probes, before any load), in "
                                       f"{v['crashes']} of {v['starts']} starts ({v['how']}; see its log); zprof "
                                       "started it again each time."
                                       + (f" Where the first crash was: {CrashStack.from_json(v['stack']).summary()}."
                                          if v.get("stack") else "")),
    "bench.driver-for-faults": lambda v: (
        f"The target {' and '.join(_FAULTS[fault] for fault in v['faults'])} (zprof's probes found it): "
        "redis-benchmark, which opens all its connections at once and pipelines its first commands, would hang on "
        f"it, so zprof's built-in driver drove both servers with {v['clients']} client(s) and pipeline "
        f"{v['pipeline']}."),
    "bench.no-redis-benchmark": lambda v: ("redis-benchmark is not installed (apt-get install redis-tools): zprof's "
                                           "built-in driver drove both servers."),
    "bench.p999-from-driver": lambda v: (
        "p99.9 is not from redis-benchmark, whose CSV stops at p99: it comes from a short pass of zprof's built-in "
        f"driver (at most {v['requests']:,} requests, {v['clients']} client(s), pipeline {v['pipeline']}) on the "
        "same fresh server right after each redis-benchmark run, and includes the Python client's own tail, so it "
        "is an upper bound that weighs on both servers alike."),
    "bench.python-driver": lambda v: ("zprof's driver is written in Python and uses one core at most; when it uses "
                                      "most of that core it, not the server, sets the pace, which pulls the two "
                                      "servers' figures together."),
    "bench.latency-per-batch": _per_batch,
    "bench.mix-by-driver": lambda v: ("MIX interleaves the tier 1 and 2 commands inside each pipelined batch, which "
                                      "redis-benchmark cannot do: zprof's driver drove it for both servers."),
    "bench.round-trips": lambda v: ("With one client and one command at a time every request is a round trip: the "
                                    "figures measure latency more than the throughput either server could sustain."),
    "bench.benchmark-timed-out": lambda v: (f"{v['reason']}. zprof's built-in driver ({v['clients']} client(s), "
                                            f"pipeline {v['pipeline']}) then drove both servers in every trial; the "
                                            "redis-benchmark runs before were discarded."),
    "bench.lengthened": _lengthened,
    "bench.single-trial": lambda v: ("A single trial: no confidence interval and no spread; run 3 trials or more to "
                                     "judge the noise."),
    "bench.unstable": lambda v: (f"Unstable {v['metric']} (a server's {v['metric']} varied by more than "
                                 f"{v['cv']:g}% CV over the trials): {_names(v['commands'])}. The machine was noisy; "
                                 "where even the 95% interval lay wholly in one level, that level stands, otherwise "
                                 "the status is unstable."),
    "bench.generator-bound": lambda v: (f"The load generator used {v['percent']:.0f}% or more of its core on "
                                        f"{_names(v['commands'])}: it may have set the pace, which pulls those ratios "
                                        "toward 100%, so their status is load-bound (inconclusive) unless the "
                                        "verdict is a conclusive unacceptable."),
    "bench.machine-saturated": lambda v: (f"The machine's CPUs were {v['percent']:.0f}% or more busy during "
                                          f"{_names(v['commands'])}: the servers shared the cores with the load "
                                          "generator (and anything else running), so their status is load-bound "
                                          "(inconclusive) unless the verdict is a conclusive unacceptable."),
    "bench.interference": lambda v: (f"Other processes on the machine used CPU during the trials of "
                                     f"{_names(v['commands'])}: a side could have run up to {v['most']:.1f} times "
                                     "faster without them. A verdict is conclusive only if it holds across that "
                                     "(the 95% interval widened by each side's factor)."),
    "bench.memory-indicative": lambda v: (f"Memory per key from {v['keys']:,} keys is indicative, not a verdict: "
                                          f"below {v['minimum']:,} keys the servers' fixed costs weigh on the figure "
                                          "per key (--keys)."),
    "bench.config-unanswered": lambda v: ("The target never answered CONFIG GET, which redis-benchmark sends first and "
                                          "waits for: zprof's built-in driver drove both servers with "
                                          f"{v['clients']} client(s) and pipeline {v['pipeline']}."),
    "bench.no-p999": lambda v: ("p99.9 was not measured: redis-benchmark does not report it, and this run made no "
                                "pass of zprof's driver for it."),
    "bench.no-config": lambda v: ("The target does not answer CONFIG GET, which redis-benchmark asks at start-up: "
                                  "it warns and runs on, so nothing is lost."),
    "bench.target-persists": lambda v: (
        f"The target wrote {v['bytes']:,} bytes to disk during its trials"
        + (f" (files it keeps open for writing: {_names(v['files'])})" if v["files"] else "")
        + (", while Redis ran without persistence (--save \"\" --appendonly no): its figures include work Redis "
           "did not do. --redis-persistence aof runs Redis with its append-only file, like for like."
           if v["redis"] == "off" else f"; Redis ran with its persistence on (--redis-persistence {v['redis']}).")),
    "bench.no-dbsize": lambda v: (f"The target does not answer DBSIZE: zprof could not check that it holds the "
                                  f"{v['keys']:,} keys it stored, so memory per key assumes it does."),
    "workload.dropped": lambda v: (f"The server rejects {', '.join(v['commands'])} (the first: {v['first_error']}); "
                                   "zprof left them out of the workload."),
    "server.fixed-port": lambda v: (f"The server listens on a fixed port, {v['port']} (its start command takes no "
                                    "{port}): zprof checked the port was free before starting it."),
    "server.port-from-env": lambda v: (f"The server takes its port from the environment ({', '.join(v['names'])}="
                                       f"{v['port']})."),
    "server.binds-all": lambda v: (f"The server listens on {v['address']} (port {v['port']}), every interface, not "
                                   "only loopback: zprof's load still goes to 127.0.0.1, but others can reach it "
                                   "while it runs."),
    "target.build-mode": lambda v: _build_mode(v),
    "baseline.error-replies": lambda v: (f"{v['command']}: {v['errors']:,} of the {v['requests']:,} requests with the "
                                         f"shim got an error reply (the first: {v['first_error']}); its allocations "
                                         "include the error path."),
    "regress.past-figures": lambda v: (f"The baseline's build could not run here ({v['reason']}), so the figures it "
                                       f"recorded on {v['measured'][:10]} were used: timings from another hour "
                                       "can show a regression but not that a change is within the threshold."),
    "regress.other-machine": lambda v: (f"The baseline ran on another machine ({v['baseline']}; now {v['current']}): "
                                        "absolute throughput and latency are not comparable and are not judged; "
                                        "allocation and instruction counts and the ratio to Redis still are."),
    "regress.other-build": lambda v: (f"The baseline was built with another {v['what']} ({v['baseline']}; now "
                                      f"{v['current']}): absolute times and instruction counts are not comparable "
                                      "and are not judged; allocation counts and the ratio to Redis still are."),
    "regress.other-instruction-source": lambda v: (f"The baseline counted instructions with {v['baseline']}, this "
                                                   f"run with {v['current']}: their counts are not comparable."),
    "regress.other-suite": lambda v: (f"The baseline's suite ran {v['baseline'][0]:,} requests after a warm-up of "
                                      f"{v['baseline'][1]:,}, this one {v['current'][0]:,} after {v['current'][1]:,}: "
                                      "per-request figures that depend on how many keys a run added (retained "
                                      "bytes, hash table growth) may differ for that reason alone."),
    "regress.commands-not-run": lambda v: (f"Not run now, so not compared: {_names(v['commands'])} (in the "
                                           "baseline's suite)."),
    "regress.commands-not-in-baseline": lambda v: (f"Measured but not compared: {_names(v['commands'])} (not in the "
                                                   "baseline)."),
    "bench.keys-lost": lambda v: (f"The {v['server']} reports {v['stored']:,} keys (DBSIZE) after {v['keys']:,} "
                                  "SETs of distinct keys, so zprof does not judge memory per key."),
    # Commands a server answers without doing them (zprof.load.support): {"commands": {name: "unsupported (...)"}}.
    "workload.unsupported": lambda v: (f"The server answers {_names(list(v['commands']))} without doing what the "
                                       f"command does ({_unsupported(v['commands'])}); zprof left them out of the "
                                       "workload."),
    "bench.unsupported": lambda v: (f"Neither measured nor judged: {_unsupported(v['commands'])}. The target answers "
                                    "these commands without doing them, so their figures would measure nothing."),
    "bench.no-memory-per-key": lambda v: (f"Memory per key is not computed: {v['reason']}, and the figure rests on "
                                          f"it (zprof stores {v['keys']:,} keys with SET or MSET and counts them with "
                                          "DBSIZE)."),
    "allocs.no-dbsize": lambda v: (f"Without DBSIZE ({v['reason']}), zprof did not count the keys the run added: "
                                   "no retained bytes per new key."),
    "memory.no-dbsize": lambda v: (f"Without DBSIZE ({v['reason']}), zprof did not count the keys each load phase "
                                   "added: no bytes per new key."),
    "memory.no-flushall": lambda v: (f"FLUSHALL is {v['reason']}: zprof left out the phase after FLUSHALL, so what "
                                     "the load kept cannot be told from a leak, and there is no leak verdict."),
}


def sentence(note: Note) -> str:
    """The note as a sentence; an unknown code (an artifact from a newer zprof) shows as it is."""
    render = _SENTENCES.get(note.code)
    if render is None:
        return f"{note.code}: {note.values}"
    return render(note.values)


def known_codes() -> set[str]:
    return set(_SENTENCES)
