"""Where zprof keeps what it makes: one cache directory, never inside a checkout."""

from __future__ import annotations

import os
from pathlib import Path

from zprof.errors import ZprofError


def cache_root() -> Path:
    """$ZPROF_CACHE, else $XDG_CACHE_HOME/zprof, else ~/.cache/zprof."""
    configured = os.environ.get("ZPROF_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zprof"


def cache_dir(*parts: str) -> Path:
    """A directory under the cache, made if needed; a cache zprof cannot write to is the user's to fix."""
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ZprofError(f"cannot use zprof's cache directory {cache_root()}: {error.strerror or error} "
                         f"({error.filename or path})",
                         detail="Point $ZPROF_CACHE at a directory zprof may write to.") from error
    return path
