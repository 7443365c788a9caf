"""zprof regress: the suite on the current tree against a saved baseline; exit 0 pass, 1 regression,
2 could not measure. --install-hook writes a git pre-commit hook that runs it."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from zprof import artifact
from zprof.commands.options import suite_options, target_options
from zprof.errors import ZprofError
from zprof.files import write_text_atomically
from zprof.progress import LiveProgress
from zprof.report.common import make_console
from zprof.report.regress import regress_document
from zprof.report.render import to_markdown, to_terminal
from zprof.sessions.baseline import check_name, check_regression, load_baseline, project_root, suite_settings
from zprof.sessions.pre_commit import install_pre_commit_hook
from zprof.sessions.target import TargetOptions


@click.command("regress")
@target_options
@click.option("--baseline", "baseline_name", default=None, metavar="NAME",
              help="The baseline to compare with (default: the one saved last).")
@suite_options
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Save the check, with both runs' raw values, as JSON (schema zprof.regress/1).")
@click.option("--markdown", "markdown_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as Markdown (for a CI job summary).")
@click.option("--install-hook", is_flag=True,
              help="Write a git pre-commit hook that runs zprof regress --trials 0, and exit.")
def regress_command(target: TargetOptions, baseline_name: str | None, commands: list[str] | None,
                    requests: int | None, trials: int | None, against: str | None, min_trial_seconds: float,
                    json_path: Path | None, markdown_path: Path | None, install_hook: bool) -> int:
    """Run the baseline's suite on the current tree and compare: exit 0 when nothing regressed, 1 on a
    regression (or a throughput under 70% of Redis), 2 when it could not measure."""
    root = project_root(target.project)
    if install_hook:
        hook, command = install_pre_commit_hook(root, baseline_name)
        make_console().print(f"Installed {hook}: git commit now runs {command}", soft_wrap=True)
        return 0
    for path, flag in ((json_path, "--json"), (markdown_path, "--markdown")):
        if path is not None and not path.absolute().parent.is_dir():
            raise ZprofError(f"cannot write {flag} {path}: {path.absolute().parent} is not a directory")
    baseline = load_baseline(root, check_name(baseline_name) if baseline_name else None)
    suite = baseline.settings
    explicit_seconds = (click.get_current_context().get_parameter_source("min_trial_seconds")
                        is not click.core.ParameterSource.DEFAULT)
    settings = suite_settings(target, commands or suite.commands, requests or suite.requests,
                              suite.trials if trials is None else trials,
                              against if against is not None else (suite.against or "none"),
                              min_trial_seconds if explicit_seconds else suite.min_trial_seconds)
    with LiveProgress(Console(stderr=True)) as progress:
        run = check_regression(target, baseline, settings, progress)
    document = regress_document(run)
    if json_path is not None:
        artifact.write(run, json_path)
    if markdown_path is not None:
        write_text_atomically(markdown_path, to_markdown(document))
    to_terminal(document, make_console())
    return run.exit_code
