"""The project as it is at a git revision, to build beside the working tree: the revision's tree exported once
into zprof's cache (`revisions/<commit>/`), content-addressed by its commit, and the project's directory in
it. The user's checkout is never touched: no checkout, no worktree added to its repository."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zprof.git import export_tree, git_toplevel, resolve_commit
from zprof.paths import cache_dir
from zprof.registry import current

WORKING_TREE = "the working tree"


@dataclass(frozen=True)
class Revision:
    label: str  # as asked ("HEAD", "main") or WORKING_TREE
    commit: str | None  # None: the working tree as it is
    project: Path  # the project's directory to build

    @property
    def short(self) -> str:
        return self.commit[:12] if self.commit else WORKING_TREE


def revision(project: Path, asked: str | None) -> Revision:
    """The project at revision `asked` (None: the working tree, as it is, in place)."""
    if asked is None:
        return Revision(WORKING_TREE, None, project)
    commit = resolve_commit(project, asked)
    top = git_toplevel(project)
    assert top is not None
    inside = project.resolve().relative_to(top.resolve())
    tree = cache_dir("revisions") / commit
    if not tree.exists():
        # Exported beside, then renamed into place: a tree under its commit's name is always whole.
        staging = Path(tempfile.mkdtemp(prefix=f"{commit[:12]}-", dir=cache_dir("revisions")))
        current().add_directory(staging)
        try:
            export_tree(project, commit, staging / "tree")
            with contextlib.suppress(OSError):  # another zprof exported it meanwhile
                (staging / "tree").rename(tree)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            current().remove_directory(staging)
    return Revision(asked, commit, tree / inside)
