"""zprof regress: the current tree against a saved baseline's kept build, side by side; exit 0 pass,
1 regression, 3 inconclusive, 2 could not measure. --install-hook writes a git pre-commit hook that runs it."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from zprof import artifact
from zprof.commands.options import suite_options, target_options
from zprof.errors import ZprofError
from zprof.files import write_text_atomically
from zprof.load.workloads import DEFAULT_KEYSPACE, bench_workload
from zprof.model.baseline import RegressRun
from zprof.model.compare import CompareRun
from zprof.progress import LiveProgress
from zprof.report.common import make_console
from zprof.report.compare import compare_document
from zprof.report.document import Document
from zprof.report.regress import regress_document
from zprof.report.render import to_markdown, to_terminal
from zprof.sessions.baseline import DEFAULT_COMMANDS, locate_baseline, project_root, read_baseline, suite_settings
from zprof.sessions.compare import CompareOptions, measure_compare
from zprof.sessions.pre_commit import install_pre_commit_hook
from zprof.sessions.regress import DEFAULT_BUDGET_S, check_regression
from zprof.sessions.target import TargetOptions


@click.command("regress")
@target_options
@click.option("--baseline", "baseline_name", default=None, metavar="NAME|PATH",
              help="The baseline to compare with: a name in the project's .zprof/baselines/, or a baseline file "
                   "(or a directory holding one) from anywhere (default: the one saved last).")
@click.option("--baseline-rev", default=None, metavar="REV",
              help="Instead of a saved baseline: build git revision REV and run it beside the working tree now "
                   "(zprof compare's engine); exit 3 when inconclusive.")
@suite_options
@click.option("--budget", default=DEFAULT_BUDGET_S, show_default=True, type=click.FloatRange(10, 86_400),
              help="Seconds of rounds at most (side by side, beside the baseline's kept build, or --baseline-rev); "
                   "a figure still undecided then is inconclusive (exit 3).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Save the check, with both runs' raw values, as JSON (schema zprof.regress/1).")
@click.option("--markdown", "markdown_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as Markdown (for a CI job summary).")
@click.option("--install-hook", is_flag=True,
              help="Write a git pre-commit hook that runs zprof regress --trials 0, and exit.")
def regress_command(target: TargetOptions, baseline_name: str | None, baseline_rev: str | None,
                    commands: list[str] | None,
                    requests: int | None, trials: int | None, against: str | None, min_trial_seconds: float,
                    budget: float, json_path: Path | None, markdown_path: Path | None, install_hook: bool) -> int:
    """Run the baseline's kept build and the current tree side by side and compare: exit 0 when nothing
    regressed, 1 on a regression (or a throughput under 70% of Redis), 3 when it could not tell (a figure
    undecided in the budget, or the CPU not checked), 2 when it could not measure."""
    root = project_root(target.project)
    if install_hook:
        hook, command = install_pre_commit_hook(root, baseline_name)
        make_console().print(f"Installed {hook}: git commit now runs {command}", soft_wrap=True)
        return 0
    for path, flag in ((json_path, "--json"), (markdown_path, "--markdown")):
        if path is not None and not path.absolute().parent.is_dir():
            raise ZprofError(f"cannot write {flag} {path}: {path.absolute().parent} is not a directory")
    if baseline_rev is not None:
        return _against_revision(target, baseline_rev, commands or list(DEFAULT_COMMANDS), budget, json_path,
                                 markdown_path)
    file = locate_baseline(root, baseline_name)
    baseline = read_baseline(file)
    suite = baseline.settings
    explicit_seconds = (click.get_current_context().get_parameter_source("min_trial_seconds")
                        is not click.core.ParameterSource.DEFAULT)
    settings = suite_settings(target, commands or suite.commands, requests or suite.requests,
                              suite.trials if trials is None else trials,
                              against if against is not None else (suite.against or "none"),
                              min_trial_seconds if explicit_seconds else suite.min_trial_seconds)
    with LiveProgress(Console(stderr=True)) as progress:
        run = check_regression(target, baseline, file, settings, progress, budget)
    return _report(run, regress_document(run), json_path, markdown_path)


def _against_revision(target: TargetOptions, revision: str, commands: list[str], budget: float,
                      json_path: Path | None, markdown_path: Path | None) -> int:
    """The gate as zprof compare runs it: REV built and run beside the working tree, round by round."""
    options = CompareOptions(target, revision, None, [bench_workload(name, DEFAULT_KEYSPACE) for name in commands],
                             budget=budget)
    with LiveProgress(Console(stderr=True)) as progress:
        run = measure_compare(options, progress)
    return _report(run, compare_document(run), json_path, markdown_path)


def _report(run: RegressRun | CompareRun, document: Document, json_path: Path | None,
            markdown_path: Path | None) -> int:
    """The check saved where asked, printed, and its exit status."""
    if json_path is not None:
        artifact.write(run, json_path)
    if markdown_path is not None:
        write_text_atomically(markdown_path, to_markdown(document))
    to_terminal(document, make_console())
    return run.exit_code
