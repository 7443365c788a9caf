"""zprof validate: the whole validation procedure in one command, and one report a reviewer acts on."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
from rich.console import Console

from zprof import artifact
from zprof.commands.options import Outputs, output_options, redis_persistence_option, target_options
from zprof.errors import EXIT_TARGET, ZprofError
from zprof.files import write_text_atomically
from zprof.load.workloads import TIERS
from zprof.model.validate import APPROVED, APPROVED_MINOR, NEEDS_WORK, ValidateRun
from zprof.progress import LiveProgress
from zprof.report.common import make_console
from zprof.report.render import to_html, to_markdown, to_terminal
from zprof.report.validate import VERDICT_WORDS, validate_document, validate_summary
from zprof.sessions.baseline import check_name
from zprof.sessions.target import TargetOptions
from zprof.sessions.validate import QUICK, ValidateOptions, validate

# The tiers whose commands each have their own allocations, profile share and Redis comparison.
VALIDATED_TIERS = ("1", "2")
REPORT_FILES = ("report.md", "report.html", "report.json")


def command_names(tier: str | None, command_list: str | None, answered: list[str] | None) -> list[str]:
    """--commands, or a tier's commands (1, 2 or both), or those of tiers 1 and 2 zprof.toml lists."""
    if command_list is not None:
        names = [name.strip().upper() for name in command_list.split(",") if name.strip()]
        unknown = [name for name in names if not any(name in TIERS[t] for t in VALIDATED_TIERS)]
        if not names or unknown:
            raise ZprofError(f"--commands: {', '.join(unknown) or 'none given'}: validate takes commands of tiers 1 "
                             "and 2: " + ", ".join(TIERS["1"] + TIERS["2"]))
        return names
    tiers = VALIDATED_TIERS if tier in (None, "all") else (tier,)
    names = [name for t in tiers for name in TIERS[t]]
    return [name for name in names if answered is None or name in answered] or names


@click.command("validate")
@target_options
@click.option("--tier", type=click.Choice(["1", "2", "all"]), default=None,
              help="1: " + ", ".join(TIERS["1"]) + "; 2: " + ", ".join(TIERS["2"]) + "; all (the default): both.")
@click.option("--commands", "command_list", default=None, metavar="CMD,CMD",
              help="Validate these commands instead of a tier.")
@click.option("--quick", is_flag=True,
              help=f"Fewer requests, {QUICK.bench_trials} trials of at least {QUICK.min_trial_seconds:g} s per command "
                   "and server, and short recordings: a first look in a minute or two; the report says its figures "
                   "are indicative.")
@click.option("--redis-server", "redis_server", default=None, metavar="PATH",
              help="The reference server (default: redis-server on PATH).")
@click.option("--baseline", "baseline_name", default=None, metavar="NAME",
              help="The baseline for the regression check (default: the newest in .zprof/baselines/; none saved: "
                   "the check is skipped and the report says so).")
@redis_persistence_option
@output_options
def validate_command(target: TargetOptions, tier: str | None, command_list: str | None, quick: bool,
                     redis_server: str | None, baseline_name: str | None, redis_persistence: str,
                     output: Path | None, json_path: Path | None) -> int:
    """Profile allocations and hot paths, compare with Redis, check memory; recommend, and give a verdict."""
    if tier is not None and command_list is not None:
        raise ZprofError("pass --tier or --commands, not both")
    options = ValidateOptions(target, command_names(tier, command_list, target.config.commands), quick, redis_server,
                              check_name(baseline_name) if baseline_name else None, redis_persistence)
    outputs = Outputs.prepare("validate", output, json_path)
    console = make_console()
    try:
        with LiveProgress(Console(stderr=True)) as progress:
            run = validate(options, outputs.directory, progress)
    except BaseException:
        shutil.rmtree(outputs.directory, ignore_errors=True)  # nothing measured: no half-filled directory
        raise
    write_reports(run, outputs)
    to_terminal(validate_summary(run, str(outputs.directory)), console)
    if run.verdict == NEEDS_WORK:
        return EXIT_TARGET
    if run.verdict not in (APPROVED, APPROVED_MINOR):
        raise ZprofError(f"no verdict: {VERDICT_WORDS[run.verdict].split(': ', 1)[1]}",
                         detail=f"The report says what was measured: {outputs.directory}/report.md.")
    return 0


def write_reports(run: ValidateRun, outputs: Outputs) -> None:
    """run.json (and report.json, the same), report.md and report.html; the run first, so it is never lost."""
    artifact.write(run, outputs.directory / artifact.RUN_FILE)
    artifact.write(run, outputs.directory / "report.json")
    if outputs.json_path is not None:
        artifact.write(run, outputs.json_path)
    document = validate_document(run)
    write_text_atomically(outputs.directory / "report.md", to_markdown(document))
    write_text_atomically(outputs.directory / "report.html", to_html(document, outputs.directory))
