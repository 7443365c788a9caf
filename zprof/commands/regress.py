"""zprof regress: the suite on the current tree against a saved baseline; exit 0 pass, 1 regression,
2 could not measure. --install-hook writes a git pre-commit hook that runs it."""

from __future__ import annotations

import os
import shlex
import sys
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
from zprof.sessions.baseline import (
    check_name,
    check_regression,
    git_hooks_dir,
    git_toplevel,
    load_baseline,
    project_root,
    suite_settings,
)
from zprof.sessions.target import TargetOptions

HOOK = "pre-commit"


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
        install_pre_commit_hook(root, baseline_name)
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


def hook_script(root: Path, toplevel: Path, baseline_name: str | None) -> str:
    project = os.path.relpath(root, toplevel)
    command = [sys.executable, "-m", "zprof", "regress", "--project", project, "--trials", "0"]
    if baseline_name:
        command += ["--baseline", check_name(baseline_name)]
    return "\n".join([
        "#!/bin/sh",
        "# Written by `zprof regress --install-hook`: blocks a commit whose allocations or instructions per",
        f"# request regressed against the newest baseline in {project}/.zprof/baselines/ (exit 1), or that zprof",
        "# could not measure (exit 2). Only the deterministic signals (--trials 0): quick, and no noisy machine",
        "# can fool them. It measures the working tree. Skip it once with: git commit --no-verify",
        "exec " + shlex.join(command),
        "",
    ])


def install_pre_commit_hook(root: Path, baseline_name: str | None) -> Path:
    hooks, toplevel = git_hooks_dir(root), git_toplevel(root)
    if hooks is None or toplevel is None:
        raise ZprofError(f"{root} is not in a git checkout: there is no repository to install a hook in")
    hook = hooks / HOOK
    script = hook_script(root, toplevel, baseline_name)
    if hook.exists() or hook.is_symlink():
        raise ZprofError(f"a {HOOK} hook exists already ({hook}); zprof does not overwrite it",
                         detail="Add this line to it instead:\n" + script.splitlines()[-1])
    hooks.mkdir(parents=True, exist_ok=True)
    try:
        with open(hook, "x") as file:  # "x": never over a hook written meanwhile
            file.write(script)
    except FileExistsError:
        raise ZprofError(f"a {HOOK} hook exists already ({hook}); zprof does not overwrite it") from None
    hook.chmod(0o755)
    make_console().print(f"Installed {hook}: git commit now runs {script.splitlines()[-1].removeprefix('exec ')}",
                         soft_wrap=True)
    return hook
