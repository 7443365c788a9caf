"""The git pre-commit hook `zprof regress --install-hook` writes: it runs the deterministic half of
`zprof regress` (--trials 0) on the working tree before every commit."""

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
    return "\n".join([
        "#!/bin/sh",
        "# Written by `zprof regress --install-hook`: blocks a commit whose allocations or instructions per",
        f"# request regressed against the newest baseline in {project}/.zprof/baselines/ (exit 1), or that zprof",
        "# could not measure (exit 2). Only the deterministic signals (--trials 0): quick, and no noisy machine",
        "# can fool them. It measures the working tree. Skip it once with: git commit --no-verify",
        "exec " + shlex.join(command),
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
                         detail="Add this line to it instead:\n" + script.splitlines()[-1])
    hooks.mkdir(parents=True, exist_ok=True)
    try:
        with open(hook, "x") as file:  # "x": never over a hook written meanwhile
            file.write(script)
    except FileExistsError:
        raise ZprofError(f"a {HOOK} hook exists already ({hook}); zprof does not overwrite it") from None
    hook.chmod(0o755)
    return hook, script.splitlines()[-1].removeprefix("exec ")
