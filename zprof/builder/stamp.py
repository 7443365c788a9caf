"""Cache entries that vouch for themselves.

An entry (a build's prefix, a shim overlay) is made in a staging directory and moved into place
whole; its stamp, written last, names the hash of its inputs (the entry's key) and the hash of each
file that matters in it. An entry whose stamp is missing, names other inputs, or disagrees with a
file (a build killed halfway, a truncated binary, a file edited by hand) is made again, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

STAMP_FILE = "stamp.json"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_stamp(entry: Path, key: str, files: list[Path]) -> None:
    """Vouches for `files` (paths inside `entry`) as made from inputs hashing to `key`; the last write."""
    body = {"key": key, "files": {str(path.relative_to(entry)): file_digest(path) for path in files}}
    handle, temporary = tempfile.mkstemp(prefix=f".{STAMP_FILE}.", dir=entry)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(body, file, indent=1)
        os.replace(temporary, entry / STAMP_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def verified(entry: Path, key: str) -> bool:
    """Whether the entry is whole: stamped for `key`, and every stamped file as it was stamped."""
    try:
        body = json.loads((entry / STAMP_FILE).read_text())
        files = body["files"]
        return body["key"] == key and bool(files) and all(
            file_digest(entry / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def discard(entry: Path) -> None:
    """Removes an entry that is not whole: renamed aside first, so that no reader finds it half-removed."""
    if not entry.exists():
        return
    aside = entry.with_name(f"{entry.name}.discarded-{os.getpid()}")
    try:
        entry.rename(aside)
    except OSError:
        aside = entry
    shutil.rmtree(aside, ignore_errors=True)


def put_in_place(staging: Path, entry: Path) -> None:
    """Moves a finished (stamped) staging directory to `entry`; another zprof that made the same entry
    first wins, and this copy is dropped."""
    try:
        staging.rename(entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
