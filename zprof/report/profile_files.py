"""The profile's files: folded stacks, speedscope, the flame graph, pprof, and zprof's own
JSON, which `zprof flame --diff` reads back."""

from __future__ import annotations

import json
from pathlib import Path

from zprof.analysis.stacks import StackProfile, folded_lines, profile_from_json, profile_to_json
from zprof.errors import ZprofError
from zprof.report.pprof import write_pprof
from zprof.report.speedscope import write_speedscope
from zprof.report.svg import render_flame_svg

PROFILE_FILE = "profile.zprof.json"


def write_outputs(profile: StackProfile, name: str, out_dir: Path) -> list[Path]:
    files = {
        "stacks.folded": lambda path: path.write_text("\n".join(folded_lines(profile)) + "\n"),
        "profile.speedscope.json": lambda path: write_speedscope(profile, name, path),
        "flame.svg": lambda path: path.write_text(render_flame_svg(profile, name), encoding="utf-8"),
        "profile.pb.gz": lambda path: write_pprof(profile, path),
        PROFILE_FILE: lambda path: path.write_text(json.dumps(profile_to_json(profile))),
    }
    for file_name, write in files.items():
        write(out_dir / file_name)
    return [out_dir / file_name for file_name in files]


def load_profile(directory: Path) -> StackProfile:
    path = directory / PROFILE_FILE
    try:
        return profile_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ZprofError(f"{directory} is not a zprof flame output (no {PROFILE_FILE})") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ZprofError(f"cannot read {path}: {error}") from error
