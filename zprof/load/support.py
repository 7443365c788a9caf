"""Whether the server does what a command says, not only whether it answers it.

A server may answer `+OK` to commands it does not implement (issue 22): taken at its word,
zprof counted allocations of a ZADD that did nothing, judged an HSET that stored nothing,
computed memory per key from MSETs that kept no key, and blamed a FLUSHALL that never ran
for not giving memory back. So a command counts as supported only when

- its reply has the type the command returns (`RETURNS`; a command not in the table is
  taken on any reply that is not an error, and said "not checked"), and
- for a write, the read that should see it does (`EFFECTS`): SET then GET returns the
  value, a second LPUSH answers a longer list, FLUSHALL leaves no key behind...

A write whose effect no read can show (the server rejects the reads, or answers them with
the wrong type) is taken on its reply's type alone, and says so (`checked`): zprof calls
a command faked only on evidence.

The checks write keys of zprof's own (`KEY_PREFIX`, with a random part, so that no key an
earlier check left can fool a later one) and delete them afterwards where the server has
DEL; a server without it keeps them (a few bytes).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zprof.errors import ZprofError
from zprof.load.driver import Workload
from zprof.load.resp import ErrorReply, Reply, SyncClient
from zprof.load.workloads import CONFIG_GET

KEY_PREFIX = "zprof:support:"
SUPPORT_TIMEOUT_S = 2.0

# What zprof's commands send besides the workload, by the name reports give them.
ZPROF_OWN: dict[str, Workload] = {"FLUSHALL": Workload.from_template("FLUSHALL"),
                                  "DBSIZE": Workload.from_template("DBSIZE"), "CONFIG GET": CONFIG_GET,
                                  "INFO": Workload.from_template("INFO")}

# The shapes of a reply: a status reply is its text after "+" ("+OK"); the others by type.
INTEGER, BULK, NIL, ARRAY, ERROR = "integer", "bulk", "nil", "array", "error"
OK, PONG = "+OK", "+PONG"
_SHAPE_NAMES = {INTEGER: "an integer", BULK: "a bulk string", NIL: "nil", ARRAY: "an array", ERROR: "an error"}

# What each command answers (RESP2), in its plain form; `_returns` adjusts for the options that change it.
RETURNS: dict[str, tuple[str, ...]] = {
    "PING": (PONG,), "ECHO": (BULK,), "INFO": (BULK,), "CONFIG": (ARRAY,),
    "SET": (OK,), "MSET": (OK,), "FLUSHALL": (OK,),
    "GET": (BULK, NIL), "HGET": (BULK, NIL), "LPOP": (BULK, NIL), "RPOP": (BULK, NIL),
    "INCR": (INTEGER,), "DEL": (INTEGER,), "EXISTS": (INTEGER,), "DBSIZE": (INTEGER,), "PUBLISH": (INTEGER,),
    "LPUSH": (INTEGER,), "RPUSH": (INTEGER,), "SADD": (INTEGER,), "SREM": (INTEGER,), "HSET": (INTEGER,),
    "HDEL": (INTEGER,), "ZADD": (INTEGER,),
    "LRANGE": (ARRAY,), "SMEMBERS": (ARRAY,), "MGET": (ARRAY,), "ZRANGE": (ARRAY,),
}

# What a check established (`Support.checked`).
REPLY_AND_EFFECT = "reply and effect"
REPLY_TYPE = "reply type"  # no effect to see (a read), or none the server's reads could show
NOT_CHECKED = "not checked"  # not in RETURNS: any reply that is not an error


def shape(reply: Reply) -> str:
    if isinstance(reply, ErrorReply):
        return ERROR
    if isinstance(reply, str):
        return "+" + reply
    if isinstance(reply, int):
        return INTEGER
    if reply is None:
        return NIL
    return BULK if isinstance(reply, bytes) else ARRAY


def _named(one_shape: str, exact: bool = False) -> str:
    """How a reply's shape reads in a sentence: "a status reply" for any status but the one expected."""
    if one_shape.startswith("+"):
        return one_shape if exact else "a status reply"
    return _SHAPE_NAMES[one_shape]


def _returns(args: Sequence[bytes]) -> tuple[str, ...] | None:
    """The shapes the request may be answered with; None for a command not in the table."""
    command = args[0].decode(errors="replace").upper()
    expected = RETURNS.get(command)
    if expected is None:
        return None
    if command == "SET" and len(args) > 3:  # NX, XX or GET: nil when not set, the old value with GET
        return (OK, NIL, BULK)
    if command in ("LPOP", "RPOP") and len(args) > 2:  # with a count: an array, or nil
        return (ARRAY, NIL)
    if command == "PING" and len(args) > 1:  # the argument back; some servers answer PONG whatever it is
        return (BULK, PONG)
    if command == "ZADD" and any(arg.upper() == b"INCR" for arg in args[2:]):
        return (BULK, NIL)
    return expected


@dataclass(frozen=True)
class Support:
    """What the server did with one command. `error`: its error reply (the command is rejected);
    `faked`: how it answers without doing it ("answers +OK without doing it"); neither: supported,
    as far as `checked` says."""

    command: str
    checked: str
    error: str | None = None
    faked: str | None = None

    @property
    def supported(self) -> bool:
        return self.error is None and self.faked is None

    @property
    def unsupported(self) -> str | None:
        """The phrase every report uses for a faked command: "unsupported (answers +OK without doing it)"."""
        return f"unsupported ({self.faked})" if self.faked is not None else None

    @property
    def reason(self) -> str | None:
        """Why zprof goes without the command: its error reply, or the phrase for a faked one; None when supported."""
        return self.error if self.error is not None else self.unsupported

    def message(self) -> str:
        """`reason` as a sentence that names the command."""
        if self.faked is not None:
            return f"{self.command} is {self.unsupported}"
        return f"{self.command} is answered with an error: {self.error}"


# What a user can do about a command the server fakes: zprof measures only what the server does.
UNSUPPORTED_DETAIL = ("The server answers it without doing what the command does, so its figures would measure "
                      "nothing; zprof measures only commands the server implements.")


class Unsupported(ZprofError):
    """A command the user named that the server only pretends to do: bad input (exit 2), not a measurement.
    `support` says how it fakes it, for a caller that goes on without the command (a validation's part)."""

    def __init__(self, support: Support) -> None:
        super().__init__(support.message(), detail=UNSUPPORTED_DETAIL)
        self.support = support


# Effects ------------------------------------------------------------------------
# A write and the read that shows it: `requests` are sent in turn on one connection, with {k1} and {k2} made
# keys of zprof's own and {v} a value of its own; `seen` says from their replies whether the write took effect:
# True, False, or None when the reads cannot tell. A step answered with an error tells nothing (a full server
# refuses writes, a server without GET cannot show one). A command may have several, tried in turn until one
# tells.
Replies = list[Reply]


@dataclass(frozen=True)
class Effect:
    requests: tuple[tuple[str, ...], ...]
    seen: Callable[[Replies, bytes], bool | None]


def _read(reply: Reply, command: str) -> bool:
    """Whether a read's reply can be believed: it has the read's own type."""
    return shape(reply) in RETURNS[command]


def _is_int(reply: Reply) -> bool:
    return isinstance(reply, int) and not isinstance(reply, bool)


def _read_back(read: str) -> Callable[[Replies, bytes], bool | None]:
    """The second request, a `read`, returns the value the first wrote (GET, HGET), or lists it (ZRANGE)."""
    def seen(replies: Replies, value: bytes) -> bool | None:
        if not _read(replies[1], read):
            return None
        return value in replies[1] if isinstance(replies[1], list) else replies[1] == value
    return seen


def _grows(replies: Replies, _value: bytes) -> bool:
    """The same push twice: the second answers a length one longer (INCR: a value one higher)."""
    first, second = replies
    return _is_int(first) and _is_int(second) and second == first + 1  # type: ignore[operator]


def _added_once(replies: Replies, _value: bytes) -> bool:
    """The same member added twice: new the first time (1), known the second (0)."""
    return replies == [1, 0]


def _counted(before: int, after: int, added: int) -> Callable[[Replies, bytes], bool | None]:
    """DBSIZE (the `before`th and `after`th requests) grows by the keys the write added."""
    def seen(replies: Replies, _value: bytes) -> bool | None:
        if not (_read(replies[before], "DBSIZE") and _read(replies[after], "DBSIZE")):
            return None
        return replies[after] - replies[before] == added  # type: ignore[operator]
    return seen


def _flushed_by_get(replies: Replies, value: bytes) -> bool | None:
    """SET, GET (which must see it, or nothing can be told), FLUSHALL, GET: the key is gone."""
    if replies[1] != value or not _read(replies[3], "GET"):
        return None
    return replies[3] is None


def _flushed_by_dbsize(replies: Replies, _value: bytes) -> bool | None:
    """SET, DBSIZE (at least the key), FLUSHALL, DBSIZE: none left."""
    before, after = replies[1], replies[3]
    if not (_is_int(before) and before >= 1 and _read(after, "DBSIZE")):  # type: ignore[operator]
        return None
    return after == 0


def _counts_new_key(replies: Replies, value: bytes) -> bool | None:
    """DBSIZE, SET, GET (which must see it), DBSIZE: one more key."""
    if replies[2] != value:
        return None
    return _counted(0, 3, 1)(replies, value)


EFFECTS: dict[str, tuple[Effect, ...]] = {
    "SET": (Effect((("SET", "{k1}", "{v}"), ("GET", "{k1}")), _read_back("GET")),),
    "MSET": (Effect((("MSET", "{k1}", "{v}", "{k2}", "{v}"), ("GET", "{k2}")), _read_back("GET")),
             Effect((("DBSIZE",), ("MSET", "{k1}", "{v}", "{k2}", "{v}"), ("DBSIZE",)), _counted(0, 2, 2))),
    "INCR": (Effect((("INCR", "{k1}"), ("INCR", "{k1}")), _grows),),
    "LPUSH": (Effect((("LPUSH", "{k1}", "{v}"), ("LPUSH", "{k1}", "{v}")), _grows),),
    "RPUSH": (Effect((("RPUSH", "{k1}", "{v}"), ("RPUSH", "{k1}", "{v}")), _grows),),
    "SADD": (Effect((("SADD", "{k1}", "{v}"), ("SADD", "{k1}", "{v}")), _added_once),),
    "HSET": (Effect((("HSET", "{k1}", "field", "{v}"), ("HGET", "{k1}", "field")), _read_back("HGET")),
             Effect((("HSET", "{k1}", "field", "{v}"), ("HSET", "{k1}", "field", "{v}")), _added_once)),
    "ZADD": (Effect((("ZADD", "{k1}", "1", "{v}"), ("ZRANGE", "{k1}", "0", "-1")), _read_back("ZRANGE")),
             Effect((("ZADD", "{k1}", "1", "{v}"), ("ZADD", "{k1}", "1", "{v}")), _added_once)),
    "FLUSHALL": (Effect((("SET", "{k1}", "{v}"), ("GET", "{k1}"), ("FLUSHALL",), ("GET", "{k1}")), _flushed_by_get),
                 Effect((("SET", "{k1}", "{v}"), ("DBSIZE",), ("FLUSHALL",), ("DBSIZE",)), _flushed_by_dbsize)),
    "DBSIZE": (Effect((("DBSIZE",), ("SET", "{k1}", "{v}"), ("GET", "{k1}"), ("DBSIZE",)), _counts_new_key),),
}


def _effect_seen(client: SyncClient, command: str) -> tuple[bool | None, Reply]:
    """Whether the command's write showed (None: no read could tell), and the reply to the first write of
    the effect that told, to name in the verdict. Deletes the keys it wrote where the server has DEL."""
    token = secrets.token_hex(4)
    value = f"zprof-{token}".encode()
    written: list[str] = []
    try:
        for number, effect in enumerate(EFFECTS[command]):
            keys = {f"{{k{i}}}": f"{KEY_PREFIX}{command}:{token}:{number}:{i}" for i in (1, 2)}
            written += keys.values()
            replies = [client.call(*[keys.get(arg, value if arg == "{v}" else arg) for arg in request])
                       for request in effect.requests]
            if any(isinstance(reply, ErrorReply) for reply in replies):
                continue
            seen = effect.seen(replies, value)
            if seen is not None:
                write = next(index for index, request in enumerate(effect.requests) if request[0] == command)
                return seen, replies[write]
        return None, None
    finally:
        client.call("DEL", *written)  # an error reply where there is no DEL: the keys stay


def _shown(reply: Reply) -> str:
    """A reply as the verdict quotes it: "+OK", ":1", or what it is."""
    if isinstance(reply, str):
        return "+" + reply
    if _is_int(reply):
        return f":{reply}"
    return _named(shape(reply))


def check(host: str, port: int, workload: Workload, timeout: float = SUPPORT_TIMEOUT_S) -> Support:
    """Sends the workload's request once and checks its reply's type, then checks with zprof's own keys that
    the command's write shows. ZprofError when the server does not answer."""
    args = workload.args
    command = workload.command
    try:
        with SyncClient(host, port, timeout) as client:
            client.sock.sendall(workload.expand(random.Random(0)))
            (reply,) = client.read(1)
            if isinstance(reply, ErrorReply):
                return Support(command, REPLY_TYPE, error=reply.message)
            expected = _returns(args)
            if expected is None:
                return Support(command, NOT_CHECKED)
            if shape(reply) not in expected:
                return Support(command, REPLY_TYPE, faked=(
                    f"answers {command} with {_named(shape(reply))}, not "
                    + " or ".join(_named(one, exact=True) for one in expected)))
            if command not in EFFECTS:
                return Support(command, REPLY_TYPE)
            seen, write_reply = _effect_seen(client, command)
    except (OSError, TimeoutError, ConnectionError) as error:
        raise ZprofError(f"the server did not answer one {command}: {error or type(error).__name__}") from error
    if seen is None:
        return Support(command, REPLY_TYPE)
    if not seen:
        return Support(command, REPLY_AND_EFFECT, faked=f"answers {_shown(write_reply)} without doing it")
    return Support(command, REPLY_AND_EFFECT)
