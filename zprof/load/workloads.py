"""Default argument templates per command, in the style of redis-benchmark's tests.

`__rand_int__` is replaced by a key number below the keyspace size, so a
warm-up creates the keys and the measured run mostly overwrites them: what
the run retains is then growth, not new data.
"""

from __future__ import annotations

from zprof.errors import ZprofError
from zprof.load.driver import Workload

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
