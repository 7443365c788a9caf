"""The git pre-commit hook `zprof regress --install-hook` writes: it runs the exact half of `zprof regress`
(--trials 0) on the working tree before every commit. A regression (exit 1) or a tree zprof could not measure
(exit 2) blocks the commit; an inconclusive check (exit 3: the CPU could not be counted here) lets it through
with a warning that says what to run before pushing."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from zprof.errors import ZprofError
from zprof.git import git_hooks_dir, git_toplevel
from zprof.sessions.baseline import check_name

HOOK = "pre-commit"


def hook_script(root: Path, toplevel: Path, baseline_name: str | None) -> str:
    project = os.path.relpath(root, toplevel)
    command = [sys.executable, "-m", "zprof", "regress", "--project", project, "--trials", "0"]
    if baseline_name:
        command += ["--baseline", check_name(baseline_name)]
    full_check = shlex.join([*command[:command.index("--trials")], *command[command.index("--trials") + 2:]])
    return "\n".join([
        "#!/bin/sh",
        "# Written by `zprof regress --install-hook`: blocks a commit whose allocations or instructions per",
        f"# request regressed against the newest baseline in {project}/.zprof/baselines/ (exit 1), or that zprof",
        "# could not measure (exit 2). Only the exact signals (--trials 0): quick, and no noisy machine can fool",
        "# them. Exit 3 (inconclusive: instructions cannot be counted here, so the CPU was not checked) is a",
        "# warning, not a block. It measures the working tree. Skip it once with: git commit --no-verify",
        shlex.join(command),
        "status=$?",
        'if [ "$status" -eq 3 ]; then',
        "    echo \"zprof: inconclusive, the commit goes ahead; before pushing, check the CPU with rounds side by "
        f"side: {full_check} (with a longer --budget if it stays inconclusive)\" >&2",
        "    exit 0",
        "fi",
        'exit "$status"',
        "",
    ])


def install_pre_commit_hook(root: Path, baseline_name: str | None) -> tuple[Path, str]:
    """Writes the hook where git looks for it, never over an existing one: the hook's path and the command
    it runs."""
    hooks, toplevel = git_hooks_dir(root), git_toplevel(root)
    if hooks is None or toplevel is None:
        raise ZprofError(f"{root} is not in a git checkout: there is no repository to install a hook in")
    hook = hooks / HOOK
    script = hook_script(root, toplevel, baseline_name)
    if hook.exists() or hook.is_symlink():
        raise ZprofError(f"a {HOOK} hook exists already ({hook}); zprof does not overwrite it",
                         detail="Add these lines to it instead:\n" + "\n".join(_command_lines(script)))
    hooks.mkdir(parents=True, exist_ok=True)
    try:
        with open(hook, "x") as file:  # "x": never over a hook written meanwhile
            file.write(script)
    except FileExistsError:
        raise ZprofError(f"a {HOOK} hook exists already ({hook}); zprof does not overwrite it") from None
    hook.chmod(0o755)
    return hook, _command_lines(script)[0]


def _command_lines(script: str) -> list[str]:
    """The hook's lines after its comments: the command, and what it does with the exit status."""
    return [line for line in script.splitlines()[1:] if line and not line.startswith("#")]
