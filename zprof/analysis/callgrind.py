"""callgrind's output to a StackProfile weighted by instructions.

callgrind records, per function, its own cost and the inclusive cost of each
call it makes, not whole stacks. Stacks are rebuilt top-down from the
functions nobody calls: a path's weight is split between the function's own
cost and its calls in proportion to what callgrind measured for them. That
assumes a callee costs the same whichever caller it has (as every
callgrind-to-flame-graph conversion does); the totals per function are exact.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from zprof.analysis.stacks import Frame, ProfileBuilder, StackProfile
from zprof.analysis.symbols import display_path, is_dependency_file, is_std_file
from zprof.builder.project import SourceRoots

MAX_DEPTH = 64
# Paths lighter than this share of the total are not expanded further.
MIN_SHARE = 1e-5
_LIBC = re.compile(r"/(libc|libm|ld-linux)[.-]")


@dataclass
class _Function:
    name: str
    file: str | None = None
    obj: str | None = None
    self_cost: int = 0
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def inclusive(self) -> int:
        return self.self_cost + sum(self.calls.values())


def parse_callgrind(text: str, source_roots: SourceRoots | None = None) -> dict[str, _Function]:
    """Each function's own cost and its calls; `source_roots` names the project's files under its own checkout
    when the binary was compiled in another."""
    functions: dict[str, _Function] = {}
    names_by_id: dict[str, str] = {}
    current: _Function | None = None
    file: str | None = None
    obj: str | None = None
    pending_call: str | None = None
    callee: str | None = None

    def named(raw: str, table: dict[str, str]) -> str:
        # Compressed form: "(id) name" the first time, "(id)" afterwards.
        match = re.match(r"^\((\d+)\)\s*(.*)$", raw)
        if not match:
            return raw
        ident, name = match.groups()
        if name:
            table[ident] = name
        return table.get(ident, raw)

    def function_name(raw: str) -> str:
        # callgrind marks recursion levels as name'2, name'3: one function.
        return re.sub(r"'\d+$", "", named(raw, names_by_id))

    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0]
        if key == "fl":  # fi= and fe= name inlined code, not the function's file
            file = line.split("=", 1)[1].strip()
        elif key == "ob":
            obj = line.split("=", 1)[1].strip()
        elif key == "fn":
            name = function_name(line.split("=", 1)[1].strip())
            current = functions.setdefault(name, _Function(name))
            current.file = current.file or (source_roots.place(file) if source_roots is not None else file)
            current.obj = current.obj or obj
        elif key == "cfn":
            callee = function_name(line.split("=", 1)[1].strip())
        elif key == "calls":
            pending_call = callee
        elif line[0].isdigit() or line[0] in "+-*":
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if current is None:
                continue
            if pending_call is not None:
                if pending_call != current.name:  # a call to itself is its own cost already
                    current.calls[pending_call] += cost
                functions.setdefault(pending_call, _Function(pending_call))
                pending_call = None
            else:
                current.self_cost += cost
    return functions


def _frame(function: _Function) -> Frame:
    path = display_path(function.file) if function.file and function.file != "???" else None
    if function.obj and _LIBC.search(function.obj):
        kind = "libc"
    elif is_std_file(path):
        kind = "std"
    elif function.name.startswith("0x") or function.name == "(below main)":
        kind = "other"
    else:
        kind = "dependency" if is_dependency_file(path) else "project"
    return Frame(function.name, path, None, kind)


def build_callgrind_profile(text: str, thread: str = "callgrind",
                            source_roots: SourceRoots | None = None) -> StackProfile:
    """`source_roots` names the project's files under its own checkout when the binary was compiled in another."""
    functions = parse_callgrind(text, source_roots)
    # A root is where cost enters the call graph: `(below main)`, and thread
    # entries such as clone, whose cost in the new thread is far more than the
    # spawning thread's call to it. A function's root weight is the part of its
    # inclusive cost that no caller accounts for.
    called_cost: dict[str, int] = defaultdict(int)
    for function in functions.values():
        for callee, cost in function.calls.items():
            called_cost[callee] += cost
    roots = {name: f.inclusive - called_cost[name] for name, f in functions.items()
             if f.inclusive - called_cost[name] > 0}
    total = sum(roots.values()) or 1
    builder = ProfileBuilder("instructions")
    frames = {name: _frame(function) for name, function in functions.items()}

    def expand(function: _Function, path: list[Frame], names: set[str], weight: float) -> None:
        inclusive = function.inclusive or 1
        own = weight * function.self_cost / inclusive
        if len(path) >= MAX_DEPTH or weight < total * MIN_SHARE:
            own = weight  # not expanded further: charged here
        else:
            for callee_name, cost in function.calls.items():
                share = weight * cost / inclusive
                if callee_name in names:  # recursion: charged to the caller
                    own += share
                    continue
                callee = functions[callee_name]
                expand(callee, [*path, frames[callee_name]], names | {callee_name}, share)
        if round(own) > 0:
            builder.add(thread, path, round(own))

    for name, weight in sorted(roots.items()):
        expand(functions[name], [frames[name]], {name}, float(weight))
    profile = builder.build()
    profile.recorded_samples = profile.total_weight
    return profile
