"""A project's settings for zprof: `zprof.toml` in the project (what `zprof init` writes), or
the `[tool.zprof]` table of its `pyproject.toml`; `zprof.toml` wins.

    [target]            how to build and start the server
    exe = "zoltraak"
    build_args = ["-Dsomething=1"]
    optimize = "ReleaseFast"          # absent: the project has no optimize option
    start_command = "{binary} --port {port}"
    port = 6379                       # a server on a fixed port
    env = { PORT = "{port}" }
    ready_timeout = 20

    [workload]          the commands the server answers, and how it takes load
    commands = ["PING", "SET", "GET"]
    clients = 1
    pipeline = 1

    [server]            what `zprof init` found, for the reader
    [bench]             thresholds (also allowed at the top level)
    [baseline]          the suite `zprof baseline save` and `zprof regress` run
    commands = ["SET", "GET", "HSET", "ZADD"]
    requests = 2000
    trials = 5
    against = "redis"                 # or "none"
    min_trial_seconds = 1.0
    [regress]           when a change is a regression (`RegressThresholds`)
    instructions_percent = 2.0

Command-line flags win over these. An unknown key is an error that names it.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from zprof.errors import ZprofError
from zprof.model.baseline import RegressThresholds
from zprof.model.bench import Thresholds

CONFIG_FILE = "zprof.toml"
OPTIMIZE_MODES = ("Debug", "ReleaseSafe", "ReleaseFast", "ReleaseSmall")
_THRESHOLD_KEYS = tuple(f.name for f in fields(Thresholds) if f.name != "source")
_TARGET_KEYS: dict[str, type | tuple[type, ...]] = {
    "exe": str, "build_args": list, "optimize": str, "start_command": str, "port": int, "env": dict,
    "ready_timeout": (int, float),
}
_WORKLOAD_KEYS: dict[str, type | tuple[type, ...]] = {"commands": list, "clients": int, "pipeline": int}
_BASELINE_KEYS: dict[str, type | tuple[type, ...]] = {
    "commands": list, "requests": int, "trials": int, "against": str, "min_trial_seconds": (int, float),
}
_REGRESS_KEYS: dict[str, type | tuple[type, ...]] = {
    f.name: str if f.name == "test" else (int, float) for f in fields(RegressThresholds)
    # The Redis floor and the unstable CV are [bench]'s throughput_acceptable and unstable_cv.
    if f.name not in ("source", "redis_floor_percent", "unstable_cv_percent")
}
_SERVER_KEYS: dict[str, type | tuple[type, ...]] = {
    "concurrent_clients": bool, "pipelining": bool, "binds": str, "fixed_port": bool, "answers": list,
    "rejects": list, "optimize_source": str, "unsupported": list,
}


@dataclass(frozen=True)
class ProjectConfig:
    """What a project's configuration says; empty when it has none."""

    source: str | None = None  # "…/zprof.toml", or None
    target: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    baseline: dict[str, Any] = field(default_factory=dict)
    regress: RegressThresholds = field(default_factory=RegressThresholds)

    @property
    def commands(self) -> list[str] | None:
        return self.workload.get("commands")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as error:
        raise ZprofError(f"cannot read {path}: {error}") from error


def load_config(directory: Path | str) -> ProjectConfig:
    """The project's zprof settings: `zprof.toml` first, then `pyproject.toml`'s `[tool.zprof]`."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if path.is_file():
        return _parse(_read_toml(path), str(path))
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("zprof")
        if isinstance(table, dict):
            return _parse(table, f"{pyproject} [tool.zprof]")
    return ProjectConfig()


def _check(table: object, known: dict[str, type | tuple[type, ...]], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ZprofError(f"{where} must be a table")
    for key, value in table.items():
        if key not in known:
            raise ZprofError(f"{where}: unknown key {key!r}", detail=f"Known keys: {', '.join(known)}.")
        expected = known[key]
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            raise ZprofError(f"{where}: {key} has the wrong type ({type(value).__name__})")
    return dict(table)


def _parse(data: dict[str, Any], source: str) -> ProjectConfig:
    target = _check(data.get("target", {}), _TARGET_KEYS, f"{source} [target]")
    if "optimize" in target and target["optimize"] not in OPTIMIZE_MODES:
        raise ZprofError(f"{source} [target]: optimize must be one of {', '.join(OPTIMIZE_MODES)}")
    if not all(isinstance(arg, str) for arg in target.get("build_args", [])):
        raise ZprofError(f"{source} [target]: build_args must be a list of strings")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in target.get("env", {}).items()):
        raise ZprofError(f"{source} [target]: env must map names to strings")
    workload = _check(data.get("workload", {}), _WORKLOAD_KEYS, f"{source} [workload]")
    if "commands" in workload:
        if not workload["commands"] or not all(isinstance(c, str) for c in workload["commands"]):
            raise ZprofError(f"{source} [workload]: commands must be a non-empty list of command names")
        workload["commands"] = [command.upper() for command in workload["commands"]]
    server = _check(data.get("server", {}), _SERVER_KEYS, f"{source} [server]")
    baseline = _baseline_table(data.get("baseline", {}), f"{source} [baseline]")
    regress = _regress_thresholds(data.get("regress", {}), f"{source} [regress]")
    top = {key: value for key, value in data.items()
           if key not in ("target", "workload", "server", "bench", "baseline", "regress")}
    bench = data.get("bench", {})
    if not isinstance(bench, dict):
        raise ZprofError(f"{source}: bench must be a table")
    unknown = [key for key in top if key not in _THRESHOLD_KEYS]
    if unknown:
        raise ZprofError(f"{source}: unknown key {unknown[0]!r}",
                         detail="Known: the tables [target], [workload], [server], [bench], [baseline] and "
                                f"[regress], and the thresholds {', '.join(_THRESHOLD_KEYS)}.")
    thresholds = _thresholds_from({**top, **bench}, source) if top or bench else Thresholds()
    return ProjectConfig(source, target, workload, server, thresholds, baseline, regress)


def _baseline_table(table: object, where: str) -> dict[str, Any]:
    baseline = _check(table, _BASELINE_KEYS, where)
    if "commands" in baseline:
        if not baseline["commands"] or not all(isinstance(c, str) for c in baseline["commands"]):
            raise ZprofError(f"{where}: commands must be a non-empty list of command names")
        baseline["commands"] = [command.upper() for command in baseline["commands"]]
    for key, least in (("requests", 1), ("trials", 0)):
        if key in baseline and baseline[key] < least:
            raise ZprofError(f"{where}: {key} must be at least {least}")
    if baseline.get("against", "redis") not in ("redis", "none"):
        raise ZprofError(f"{where}: against must be \"redis\" or \"none\"")
    if "min_trial_seconds" in baseline and not 0.1 <= baseline["min_trial_seconds"] <= 3600:
        raise ZprofError(f"{where}: min_trial_seconds must be between 0.1 and 3600")
    return baseline


def _regress_thresholds(table: object, where: str) -> RegressThresholds:
    values = _check(table, _REGRESS_KEYS, where)
    if not values:
        return RegressThresholds()
    for key, value in values.items():
        if key != "test" and not 0 < value < math.inf:
            raise ZprofError(f"{where}: {key} must be a positive number, not {value!r}")
    if values.get("test", "welch") not in ("welch", "mann-whitney"):
        raise ZprofError(f"{where}: test must be \"welch\" or \"mann-whitney\"")
    if not values.get("alpha", 0.05) < 1:
        raise ZprofError(f"{where}: alpha must be under 1")
    thresholds = replace(RegressThresholds(), source=where,
                         **{key: value if key == "test" else float(value) for key, value in values.items()})
    if thresholds.minor_effect_percent > thresholds.min_effect_percent:
        raise ZprofError(f"{where}: minor_effect_percent must not be above min_effect_percent")
    return thresholds


def _thresholds_from(table: dict[str, Any], where: str) -> Thresholds:
    values: dict[str, float] = {}
    for key, value in table.items():
        if key not in _THRESHOLD_KEYS:
            raise ZprofError(f"{where}: unknown key {key!r}", detail=f"Known keys: {', '.join(_THRESHOLD_KEYS)}.")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
            raise ZprofError(f"{where}: {key} must be a positive number of percent, not {value!r}")
        values[key] = float(value)
    thresholds = replace(Thresholds(), source=where, **values)
    if thresholds.throughput_excellent < thresholds.throughput_acceptable:
        raise ZprofError(f"{where}: throughput_excellent must not be below throughput_acceptable")
    for kind in ("latency", "memory"):
        if getattr(thresholds, f"{kind}_excellent") > getattr(thresholds, f"{kind}_acceptable"):
            raise ZprofError(f"{where}: {kind}_excellent must not be above {kind}_acceptable")
    return thresholds


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(value)


def render_config(sections: dict[str, dict[str, Any]], comments: dict[str, str]) -> str:
    """TOML for `zprof init`: each table with a comment line above it; empty tables are left out."""
    lines = ["# zprof's settings for this project, written by `zprof init`; edit freely.",
             "# Command-line flags win over these."]
    for name, table in sections.items():
        if not table:
            continue
        lines.append("")
        if name in comments:
            lines.append(f"# {comments[name]}")
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"
