"""The requests zprof sends: default templates per command in the style of
redis-benchmark's tests, the tier 3 mix, and keys numbered one by one.

`__rand_int__` is replaced by a key number from the workload's key range; a
measured run takes its keys from a range its warm-up never wrote
(`Workload.with_key_range`), so what each new key costs shows in it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from zprof.errors import ZprofError
from zprof.load.driver import PLACEHOLDER, Workload
from zprof.load.resp import encode

DEFAULT_KEYSPACE = 1000
# The tier-1 and tier-2 commands of the performance standards, run together.
MIXED_COMMANDS = ("SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD", "SREM", "HSET", "HGET", "ZADD",
                  "ZRANGE", "MGET", "MSET")

TEMPLATES: dict[str, str] = {
    "PING": "PING",
    "ECHO": "ECHO hello",
    "SET": "SET key:__rand_int__ xxx",
    "GET": "GET key:__rand_int__",
    "INCR": "INCR counter:__rand_int__",
    "DEL": "DEL key:__rand_int__",
    "EXISTS": "EXISTS key:__rand_int__",
    "MSET": "MSET " + " ".join("key:__rand_int__ xxx" for _ in range(10)),
    "MGET": "MGET " + " ".join("key:__rand_int__" for _ in range(10)),
    "LPUSH": "LPUSH mylist xxx",
    "RPUSH": "RPUSH mylist xxx",
    "LPOP": "LPOP mylist",
    "RPOP": "RPOP mylist",
    "LRANGE": "LRANGE mylist 0 99",
    "SADD": "SADD myset element:__rand_int__",
    "SREM": "SREM myset element:__rand_int__",
    "SMEMBERS": "SMEMBERS myset",
    "HSET": "HSET myhash element:__rand_int__ xxx",
    "HGET": "HGET myhash element:__rand_int__",
    "HDEL": "HDEL myhash element:__rand_int__",
    "ZADD": "ZADD myzset __rand_int__ element:__rand_int__",
    "ZRANGE": "ZRANGE myzset 0 9",
    "DBSIZE": "DBSIZE",
}


# The write that makes the keys a read of the default templates finds: its hits are measured on keys written first.
READ_FILLS = {"GET": "SET key:__rand_int__ xxx", "HGET": "HSET myhash element:__rand_int__ xxx"}


def hits_of(workload: Workload) -> Workload | None:
    """The read's hits (a workload whose keys are all written before it runs), for a read with a default
    template; None for any other workload. A read measured only on keys nobody wrote measures its misses."""
    fill = READ_FILLS.get(workload.command)
    if fill is None or workload.fill or workload.args != Workload.from_template(TEMPLATES[workload.command]).args:
        return None
    return replace(workload, fill=tuple(part.encode() for part in fill.split()))


def key_writes(workload: Workload) -> Workload:
    """The writes that make every key of a hits workload's range, one request per key."""
    return NumberedKeys(workload.fill, workload.keyspace, counter=itertools.count(workload.first_key))


def with_hits(workloads: list[Workload]) -> list[Workload]:
    """Each workload, followed by its hits where it is a read (GET: misses, then GET (hits))."""
    return [each for workload in workloads for each in (workload, hits_of(workload)) if each is not None]


def mixed_workload(keyspace: int, answered: list[str] | None = None) -> list[Workload]:
    """The mixed workload: the tier 1 and 2 commands, or those of them a project's zprof.toml says its
    server answers (`answered`)."""
    names = [name for name in MIXED_COMMANDS if answered is None or name in answered]
    if not names:
        raise ZprofError("none of the mixed workload's commands is among those zprof.toml says the server answers",
                         detail=f"The mixed workload: {', '.join(MIXED_COMMANDS)}. Name one with --command.")
    return [workload_for(name, None, keyspace) for name in names]


def workload_for(command: str, template: str | None, keyspace: int = DEFAULT_KEYSPACE) -> Workload:
    if template:
        workload = Workload.from_template(template, keyspace)
        if not workload.args:
            raise ZprofError("--args is empty")
        if workload.command != command.upper():
            raise ZprofError(f"--args starts with {workload.command}, but the command is {command.upper()}")
        return workload
    known = TEMPLATES.get(command.upper())
    if known is None:
        raise ZprofError(
            f"zprof has no default arguments for {command.upper()}",
            detail=f"Pass them with --args, for example --args '{command.upper()} key:__rand_int__ value'.\n"
            f"Commands with defaults: {', '.join(sorted(TEMPLATES))}.",
        )
    return Workload.from_template(known, keyspace)


# The memory load: 16-byte key names ("key:" and 12 digits) and 3-byte values.
KEY_TEMPLATE = "SET key:__rand_int__ xxx"
MSET_BATCH = 10  # keys per MSET when the memory load can use it
DEFAULT_DATA_SIZE = 3
KEY_BYTES, VALUE_BYTES = 16, 3
# Tier 3: the pub/sub channel and the interleaved mix of tier 1 and 2 commands.
MIX, PUBLISH = "MIX", "PUBLISH"
PUBLISH_TEMPLATE = "PUBLISH zprof-bench xxx"
# What redis-benchmark asks a server before it starts.
CONFIG_GET = Workload.from_template("CONFIG GET save")


@dataclass(frozen=True)
class MixWorkload(Workload):
    """The `parts` in turn, request after request, so every pipelined batch mixes them."""

    parts: tuple[Workload, ...] = ()
    counter: Iterator[int] = field(default_factory=itertools.count, compare=False, repr=False)

    def expand(self, rng: random.Random) -> bytes:
        return self.parts[next(self.counter) % len(self.parts)].expand(rng)

    def with_key_range(self, index: int) -> MixWorkload:
        return replace(self, parts=tuple(part.with_key_range(index) for part in self.parts))


def bench_workload(command: str, keyspace: int, data_size: int = DEFAULT_DATA_SIZE) -> Workload:
    """The request for one command of the comparison (`MIX` and `PUBLISH` are tier 3's).

    Values are `data_size` bytes, as redis-benchmark's -d makes them (the templates' `xxx` is 3).
    """

    def sized(template: str) -> Workload:
        return Workload.from_template(template.replace(" xxx", " " + "x" * data_size), keyspace)

    if command == MIX:
        return MixWorkload((MIX.encode(),), keyspace, parts=tuple(sized(TEMPLATES[name]) for name in MIXED_COMMANDS))
    if command == PUBLISH:
        return sized(PUBLISH_TEMPLATE)
    return sized(TEMPLATES[command])


def describe(workload: Workload) -> str:
    if isinstance(workload, MixWorkload):
        return "pipelined mix of " + ", ".join(part.command for part in workload.parts)
    return " ".join(arg.decode() for arg in workload.args)


@dataclass(frozen=True)
class NumberedKeys(Workload):
    """`__rand_int__` replaced by 0, 1, 2, ... in turn over all connections, so N requests make N distinct
    keys; with `per_request` above 1, each request is one MSET of that many consecutive keys, up to `limit`
    keys in all (a template `SET KEY VALUE` gives the key and the value)."""

    counter: Iterator[int] = field(default_factory=itertools.count, compare=False, repr=False)
    per_request: int = 1
    limit: int | None = None

    def expand(self, rng: random.Random) -> bytes:
        if self.per_request == 1:
            number = b"%012d" % next(self.counter)
            return encode([arg.replace(PLACEHOLDER, number) for arg in self.args])
        key, value = self.args[1], self.args[2]
        pairs: list[bytes] = []
        for number in itertools.islice(self.counter, self.per_request):
            if self.limit is not None and number >= self.limit:
                break
            pairs += [key.replace(PLACEHOLDER, b"%012d" % number), value]
        return encode([b"MSET", *pairs])


# Zoltraak's performance standards, tier by tier.
TIERS = {
    "1": ("SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD", "SREM"),
    "2": ("HSET", "HGET", "ZADD", "ZRANGE", "MGET", "MSET"),
    "3": (MIX, PUBLISH),
}


def bench_command_names(tier: str, command_list: str | None, answered: list[str] | None = None) -> list[str]:
    """The commands of a tier ("1", "2", "3" or "all"), or of a list "SET,GET,..." (which wins); of a
    tier, only those `answered` (a project's zprof.toml), when it says."""
    if command_list is None:
        names = [name for level in ("1", "2", "3") for name in TIERS[level]] if tier == "all" else list(TIERS[tier])
        # MIX interleaves every tier 1 and 2 command: it is left out unless the server answers them all.
        answers = answered is None or set(answered) >= set(MIXED_COMMANDS)
        kept = [name for name in names if answered is None or name in answered or (name == MIX and answers)]
        if not kept:
            raise ZprofError(f"none of tier {tier}'s commands is among those zprof.toml says the server answers")
        return kept
    names = list(dict.fromkeys(name.strip().upper() for name in command_list.split(",") if name.strip()))
    if not names:
        raise ZprofError("--commands is empty")
    known = {*TEMPLATES, MIX, PUBLISH}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ZprofError(f"zprof bench has no request for {', '.join(unknown)}",
                         detail=f"Commands it can compare: {', '.join(sorted(known))}.")
    return names
