"""A run saved as one versioned JSON artifact, and read back into the same types.

The file is the run's record (`zprof.model`) with a few fields ahead of it:
`schema` ("zprof.allocs/3" names the kind of run and the version of its
layout), `zprof_version`, `created` and `command_line`. Writing and reading
both go through pydantic's validator for the run's dataclass, so a file that
reads back is exactly the run that was saved, and a corrupt, truncated or
foreign file is refused with the first few reasons (exit 2).

pydantic rather than a hand-written reader: it validates nested dataclasses,
optionals, tuples and dicts from their type hints, which keeps the model the
one definition of the format. Its `json_schema()` gives the published schema
(`zprof report --schema KIND`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from zprof import __version__
from zprof.errors import ZprofError
from zprof.files import write_text_atomically
from zprof.model.allocs import AllocsRun
from zprof.model.baseline import Baseline, RegressRun
from zprof.model.bench import BenchRun
from zprof.model.compare import CompareRun
from zprof.model.flame import FlameDiffRun, FlameRun
from zprof.model.memory import MassifRun, MemoryRun
from zprof.model.syscalls import SyscallsRun
from zprof.model.validate import ValidateRun

RUN_FILE = "run.json"

Run = (AllocsRun | MemoryRun | MassifRun | BenchRun | FlameRun | FlameDiffRun | ValidateRun | Baseline | RegressRun
       | SyscallsRun | CompareRun)


@dataclass(frozen=True)
class Kind:
    name: str  # "allocs"
    version: int
    type: type

    @property
    def schema(self) -> str:
        return f"zprof.{self.name}/{self.version}"


KINDS = (Kind("allocs", 3, AllocsRun), Kind("memory", 2, MemoryRun), Kind("memory.massif", 2, MassifRun),
         Kind("bench", 4, BenchRun), Kind("flame", 2, FlameRun), Kind("flame.diff", 1, FlameDiffRun),
         Kind("validate", 1, ValidateRun), Kind("baseline", 1, Baseline), Kind("regress", 1, RegressRun),
         Kind("syscalls", 1, SyscallsRun), Kind("compare", 1, CompareRun))
_BY_TYPE = {kind.type: kind for kind in KINDS}
_BY_NAME = {kind.name: kind for kind in KINDS}
ENVELOPE = ("schema", "zprof_version", "created", "command_line")
VALIDATION_ERRORS_SHOWN = 5


@cache
def _adapter(run_type: type) -> TypeAdapter[Any]:
    return TypeAdapter(run_type)


def kind_of(run: Run) -> Kind:
    return _BY_TYPE[type(run)]


def to_json(run: Run) -> dict[str, Any]:
    """The artifact's JSON object, validated: a run whose fields do not fit their types is a bug, never a file."""
    kind = kind_of(run)
    adapter = _adapter(kind.type)
    body = adapter.dump_python(run, mode="json", warnings="error")
    try:
        adapter.validate_python(body, strict=False)
    except ValidationError as error:  # pragma: no cover - a programming error, reported with its fields
        raise AssertionError(f"zprof made a {kind.name} run that does not fit its schema: {error}") from error
    return {"schema": kind.schema, "zprof_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "command_line": _command_line(), **body}


def _command_line() -> list[str]:
    return ["zprof", *sys.argv[1:]] if sys.argv and sys.argv[0].endswith(("zprof", "__main__.py")) else sys.argv


def write(run: Run, path: Path) -> Path:
    """Saves the run atomically: a reader never sees half a file."""
    return write_text_atomically(path, json.dumps(to_json(run), indent=1) + "\n")


def read(path: Path) -> Run:
    """A saved run; ZprofError (exit 2) for a file that is missing, corrupt or not zprof's."""
    if path.is_dir():
        path = path / RUN_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ZprofError(f"{path}: no such file (a zprof run directory holds {RUN_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ZprofError(f"{path} is not a zprof run: it is not readable JSON ({error})") from error
    return from_json(data, str(path))


def from_json(data: object, source: str) -> Run:
    if not isinstance(data, dict) or not isinstance(data.get("schema"), str):
        raise ZprofError(f"{source} is not a zprof run: it has no \"schema\" field")
    schema = data["schema"]
    name, _, version = schema.removeprefix("zprof.").rpartition("/")
    kind = _BY_NAME.get(name) if schema.startswith("zprof.") else None
    if kind is None:
        raise ZprofError(f"{source} is not a zprof run: its schema is {schema!r}",
                         detail="zprof reads " + ", ".join(k.schema for k in KINDS) + ".")
    if version != str(kind.version):
        raise ZprofError(f"{source} was saved in layout {schema}; this zprof reads {kind.schema}",
                         detail="Run the measurement again with this zprof to get a run it can read.")
    body = {key: value for key, value in data.items() if key not in ENVELOPE}
    try:
        return _adapter(kind.type).validate_python(body)
    except ValidationError as error:
        reasons = "\n".join(f"  {'.'.join(str(part) for part in issue['loc']) or '(top)'}: {issue['msg']}"
                            for issue in error.errors()[:VALIDATION_ERRORS_SHOWN])
        raise ZprofError(f"{source} is not a valid {kind.name} run ({error.error_count()} problem(s))",
                         detail=reasons) from None


def json_schema(kind_name: str) -> dict[str, Any]:
    kind = _BY_NAME[kind_name]
    schema = _adapter(kind.type).json_schema()
    schema["properties"] = {"schema": {"const": kind.schema}, **schema.get("properties", {})}
    return schema


def runs_under(path: Path) -> list[Path]:
    """The run files at `path`: itself, its run.json, or every run.json below a directory of runs."""
    if path.is_file():
        return [path]
    if (path / RUN_FILE).is_file():
        return [path / RUN_FILE]
    if path.is_dir():
        return sorted(path.rglob(RUN_FILE))
    raise ZprofError(f"{path}: no such file or directory")
