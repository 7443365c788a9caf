"""What zprof asks git about a project: its commit, its top level, where it keeps its hooks, and a revision's
tree, exported (never checked out in the user's repository)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from zprof.errors import ZprofError
from zprof.model.baseline import GitState
from zprof.procs import run_bounded

GIT_TIMEOUT_S = 10.0


def git(directory: Path, *args: str) -> str | None:
    # Not git's hook variables: a pre-commit hook runs zprof with GIT_DIR and GIT_INDEX_FILE set for the
    # repository's top level, which would misplace a project in a subdirectory.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    try:
        done = run_bounded(["git", "-C", str(directory), *args], GIT_TIMEOUT_S, env=env)
    except FileNotFoundError:  # no git: not a checkout zprof can read
        return None
    except subprocess.TimeoutExpired as error:
        raise ZprofError(f"git {args[0]} did not answer within {GIT_TIMEOUT_S:.0f} s") from error
    return done.stdout if done.returncode == 0 else None


def git_state(directory: Path) -> GitState | None:
    """The project's commit and whether its tracked files differ from it; None outside a git checkout."""
    described = git(directory, "log", "-1", "--format=%H%n%h%n%cI%n%s")
    if described is None:
        return None
    commit, short, committed, subject = ([*described.splitlines(), "", "", "", ""])[:4]
    if not commit:
        return None
    status = git(directory, "status", "--porcelain", "--untracked-files=no", "--", ".")
    return GitState(commit, short, bool(status and status.strip()), committed, subject)


def git_hooks_dir(directory: Path) -> Path | None:
    """Where the project's repository keeps its hooks (core.hooksPath and worktrees respected)."""
    hooks = git(directory, "rev-parse", "--path-format=absolute", "--git-path", "hooks")
    return Path(hooks.strip()) if hooks else None


def git_toplevel(directory: Path) -> Path | None:
    top = git(directory, "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top else None


ARCHIVE_TIMEOUT_S = 300.0


def resolve_commit(directory: Path, revision: str) -> str:
    """The full commit a revision names in the project's repository; bad input when it names none."""
    if git_toplevel(directory) is None:
        raise ZprofError(f"{directory} is not in a git checkout: revisions cannot be compared there")
    commit = git(directory, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if not commit or not commit.strip():
        raise ZprofError(f"{revision!r} names no commit of the repository at {git_toplevel(directory)}")
    return commit.strip()


def export_tree(directory: Path, commit: str, destination: Path) -> None:
    """The repository's tree at `commit`, written under `destination` with `git archive`: the checkout, its index
    and its list of worktrees are left as they are."""
    top = git_toplevel(directory)
    assert top is not None
    archive = destination.with_suffix(".tar")
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    try:
        done = run_bounded(["git", "-C", str(top), "archive", "--format=tar", "-o", str(archive), commit],
                           ARCHIVE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as error:
        raise ZprofError(f"git archive {commit[:12]} did not finish within {ARCHIVE_TIMEOUT_S:.0f} s") from error
    if done.returncode != 0:
        raise ZprofError(f"git archive {commit[:12]} failed", detail=done.stderr.strip()[-2000:])
    destination.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    archive.unlink()
