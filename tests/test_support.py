"""Support is proven, not assumed (issue 22): a command counts as supported only when its reply has the
command's type and its write shows in the read that should see it (zprof.load.support).

Each check is tested where it must fire and where it must not: on `Honest`, a small in-process server that does
every command it answers unless told to fake one, and on tests/fake_servers.py's fake, which answers +OK to
nearly everything; then end to end on minikv's `--fault ok-to-unknown` (+OK to what it does not implement, and
to DBSIZE, FLUSHALL and MSET without doing them) and `--full-after N` (writes that would add a key fail).
"""

from __future__ import annotations

import json
import socket
import threading
import tomllib
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import MINIKV
from tests.fake_servers import FakeServer
from zprof.errors import ZprofError
from zprof.load.driver import Workload
from zprof.load.probe import check_command
from zprof.load.resp import encode, parse
from zprof.load.support import (
    KEY_PREFIX,
    NOT_CHECKED,
    REPLY_AND_EFFECT,
    REPLY_TYPE,
    ZPROF_OWN,
    Unsupported,
    check,
)
from zprof.load.workloads import TEMPLATES

HOST = "127.0.0.1"
FAULT = ("--server-args", "--fault ok-to-unknown")


def _bulk(value: bytes | None) -> bytes:
    return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


def _array(items: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(_bulk(item) for item in items)


class Honest:
    """A RESP server that does the commands zprof checks, on one dict; `fakes` maps a command to the raw reply
    it gets instead of being run; `missing`, commands answered with an error."""

    def __init__(self, fakes: dict[str, bytes] | None = None, missing: tuple[str, ...] = ()) -> None:
        self.fakes, self.missing = fakes or {}, missing
        self.data: dict[bytes, object] = {}
        self.lock = threading.Lock()
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        buffer = bytearray()
        with connection:
            while data := connection.recv(65536):
                buffer += data
                while (parsed := parse(buffer)) is not None:
                    command, end = parsed
                    del buffer[:end]
                    with self.lock:
                        connection.sendall(self.reply(command))  # type: ignore[arg-type]

    def reply(self, args: list[bytes]) -> bytes:
        name = args[0].decode().upper()
        if name in self.fakes:
            return self.fakes[name]
        if name in self.missing:
            return b"-ERR unknown command\r\n"
        data, key = self.data, args[1] if len(args) > 1 else b""
        match name:
            case "PING":
                return b"+PONG\r\n"
            case "SET":
                data[key] = args[2]
                return b"+OK\r\n"
            case "GET":
                return _bulk(data.get(key))  # type: ignore[arg-type]
            case "MSET":
                data.update(zip(args[1::2], args[2::2], strict=True))
                return b"+OK\r\n"
            case "DEL":
                return b":%d\r\n" % sum(data.pop(k, None) is not None for k in args[1:])
            case "DBSIZE":
                return b":%d\r\n" % len(data)
            case "FLUSHALL":
                data.clear()
                return b"+OK\r\n"
            case "INCR":
                data[key] = b"%d" % (int(data.get(key, b"0")) + 1)  # type: ignore[call-overload]
                return b":%s\r\n" % data[key]
            case "LPUSH" | "RPUSH":
                items = data.setdefault(key, [])
                items.extend(args[2:])  # type: ignore[attr-defined]
                return b":%d\r\n" % len(items)  # type: ignore[arg-type]
            case "LPOP" | "RPOP":
                items = data.get(key, [])
                if len(args) > 2:  # with a count: an array
                    return _array([items.pop() for _ in range(min(int(args[2]), len(items)))])  # type: ignore[attr-defined]
                return _bulk(items.pop() if items else None)  # type: ignore[attr-defined]
            case "SADD" | "HSET" | "ZADD":
                # A set of members (SADD), or of fields / members with their value (HSET, ZADD).
                pairs = [(m, None) for m in args[2:]] if name == "SADD" else (
                    list(zip(args[2::2], args[3::2], strict=True)) if name == "HSET"
                    else list(zip(args[3::2], args[2::2], strict=True)))
                held = data.setdefault(key, {})
                added = sum(member not in held for member, _ in pairs)  # type: ignore[operator]
                held.update(pairs)  # type: ignore[attr-defined]
                return b":%d\r\n" % added
            case "HGET":
                return _bulk(data.get(key, {}).get(args[2]))  # type: ignore[attr-defined]
            case "ZRANGE" | "SMEMBERS" | "LRANGE":
                return _array(list(data.get(key, [])))  # type: ignore[arg-type]
            case "CONFIG":
                return _array([args[2], b""])
            case _:
                return b"-ERR unknown command\r\n"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[Callable[..., Honest]]:
    """Starts an `Honest` server (`fakes`, `missing`); each is closed after the test."""
    started: list[Honest] = []

    def start(fakes: dict[str, bytes] | None = None, missing: tuple[str, ...] = ()) -> Honest:
        started.append(Honest(fakes, missing))
        return started[-1]

    yield start
    for one in started:
        one.close()


def request(command: str) -> Workload:
    return ZPROF_OWN.get(command) or Workload.from_template(TEMPLATES[command])


# The reply's type: the wrong one fires, the right one does not --------------------------------------------------
WRONG_TYPE = [
    ("DBSIZE", b"+OK\r\n", "answers DBSIZE with a status reply, not an integer"),
    ("ZADD", b"+OK\r\n", "answers ZADD with a status reply, not an integer"),
    ("HSET", b"+OK\r\n", "answers HSET with a status reply, not an integer"),
    ("SET", b":1\r\n", "answers SET with an integer, not +OK"),
    ("GET", b"+OK\r\n", "answers GET with a status reply, not a bulk string or nil"),
    ("LRANGE", b"$3\r\nabc\r\n", "answers LRANGE with a bulk string, not an array"),
    ("MSET", b"+QUEUED\r\n", "answers MSET with a status reply, not +OK"),
    ("PING", b"$4\r\nPONG\r\n", "answers PING with a bulk string, not +PONG"),
    ("CONFIG GET", b":0\r\n", "answers CONFIG with an integer, not an array"),
]


@pytest.mark.parametrize(("command", "reply", "phrase"), WRONG_TYPE, ids=[case[0] for case in WRONG_TYPE])
def test_a_reply_of_the_wrong_type_is_unsupported(server, command, reply, phrase):
    name = command.split()[0]
    found = check(HOST, server({name: reply}).port, request(command))
    assert not found.supported and found.faked == phrase
    assert found.unsupported == f"unsupported ({phrase})"
    honest = check(HOST, server().port, request(command))
    assert honest.supported and honest.faked is None and honest.checked in (REPLY_TYPE, REPLY_AND_EFFECT)


def test_options_that_change_the_reply_are_understood(server):
    port = server().port
    for template in ("SET key:1 v NX", "LPOP mylist 2", "PING hello"):
        assert check(HOST, port, Workload.from_template(template)).supported, template


# The write's effect: a reply of the right type that does nothing fires, the real thing does not -----------------
NO_EFFECT = [
    ("SET", b"+OK\r\n", "answers +OK without doing it"),
    ("MSET", b"+OK\r\n", "answers +OK without doing it"),
    ("FLUSHALL", b"+OK\r\n", "answers +OK without doing it"),
    ("INCR", b":1\r\n", "answers :1 without doing it"),
    ("LPUSH", b":1\r\n", "answers :1 without doing it"),
    ("RPUSH", b":1\r\n", "answers :1 without doing it"),
    ("SADD", b":1\r\n", "answers :1 without doing it"),
    ("HSET", b":1\r\n", "answers :1 without doing it"),
    ("ZADD", b":1\r\n", "answers :1 without doing it"),
    ("DBSIZE", b":0\r\n", "answers :0 without doing it"),
]


@pytest.mark.parametrize(("command", "reply", "phrase"), NO_EFFECT, ids=[case[0] for case in NO_EFFECT])
def test_a_write_that_does_nothing_is_unsupported(server, command, reply, phrase):
    found = check(HOST, server({command: reply}).port, request(command))
    assert (found.faked, found.checked) == (phrase, REPLY_AND_EFFECT)
    assert found.message() == f"{command} is unsupported ({phrase})"
    honest = check(HOST, server().port, request(command))
    assert (honest.supported, honest.checked) == (True, REPLY_AND_EFFECT)


@pytest.mark.parametrize(("command", "read", "reply"), [
    ("MSET", "GET", b"+OK\r\n"), ("HSET", "HGET", b":1\r\n"), ("ZADD", "ZRANGE", b":1\r\n"),
    ("FLUSHALL", "GET", b"+OK\r\n")])
def test_a_write_is_seen_by_another_read_where_the_first_is_missing(server, command, read, reply):
    """MSET without GET: DBSIZE grows by its keys (or not); HSET without HGET and ZADD without ZRANGE: the same
    added twice counts 1, then 0; FLUSHALL without GET: DBSIZE is 0 after it."""
    honest = check(HOST, server(missing=(read,)).port, request(command))
    assert (honest.supported, honest.checked) == (True, REPLY_AND_EFFECT)
    faked = check(HOST, server({command: reply}, missing=(read,)).port, request(command))
    assert faked.faked == f"answers {reply.decode().strip()} without doing it"


def test_a_write_no_read_can_show_is_taken_on_its_reply_alone(server):
    """Where the reads are missing or answer the wrong type, zprof has no evidence of faking: supported, and said
    to be checked on the reply's type only."""
    for fakes, missing in (({}, ("GET",)), ({"GET": b"+OK\r\n"}, ())):
        found = check(HOST, server(fakes, missing).port, request("SET"))
        assert (found.supported, found.checked) == (True, REPLY_TYPE)
    # A write the server refuses (a full server: out of memory) tells nothing about faking either.
    full = check(HOST, server({"INCR": b"-ERR out of memory\r\n"}).port, request("INCR"))
    assert full.error == "ERR out of memory" and full.faked is None


def test_a_command_outside_the_table_is_taken_on_any_reply_but_an_error(server):
    port = server({"XADD": b"+OK\r\n"}).port
    taken = check(HOST, port, Workload.from_template("XADD stream * field value"))
    assert (taken.supported, taken.checked) == (True, NOT_CHECKED)
    rejected = check(HOST, port, Workload.from_template("XLEN stream"))
    assert rejected.error == "ERR unknown command" and rejected.reason == "ERR unknown command"


def test_the_checks_delete_their_keys_where_the_server_has_del(server):
    cleaned, kept = server(), server(missing=("DEL",))
    for one in (cleaned, kept):
        for command in ("SET", "MSET", "INCR", "LPUSH", "SADD", "HSET", "ZADD", "DBSIZE"):
            assert check(HOST, one.port, request(command)).checked == REPLY_AND_EFFECT
    assert not [key for key in cleaned.data if key.startswith(KEY_PREFIX.encode())]
    assert len([key for key in kept.data if key.startswith(KEY_PREFIX.encode())]) >= 8


def test_the_issue_s_server_ok_to_everything_gets_no_command_it_fakes():
    """tests/fake_servers.py's fake answers +OK to every command but PING, ECHO, CONFIG GET and DBSIZE (:0):
    the issue's server. GET and ZADD are caught by their type, MSET by its effect on DBSIZE; SET cannot be
    seen (its GET is faked too), so it is taken on its reply alone."""
    fake = FakeServer("drops-pipelined").start()
    try:
        found = {name: check(HOST, fake.port, request(name)) for name in ("SET", "GET", "ZADD", "HSET", "MSET")}
    finally:
        fake.close()
    assert found["GET"].faked == "answers GET with a status reply, not a bulk string or nil"
    assert found["ZADD"].faked == "answers ZADD with a status reply, not an integer"
    assert found["HSET"].faked == "answers HSET with a status reply, not an integer"
    assert found["MSET"].faked == "answers +OK without doing it"
    assert (found["SET"].supported, found["SET"].checked) == (True, REPLY_TYPE)


def test_a_named_command_the_server_fakes_is_bad_input(server):
    with pytest.raises(Unsupported, match=r"MSET is unsupported \(answers \+OK without doing it\)") as raised:
        check_command(HOST, server({"MSET": b"+OK\r\n"}).port, request("MSET"))
    assert raised.value.exit_code == 2 and raised.value.support.command == "MSET"
    assert check_command(HOST, server().port, request("MSET")).supported


def test_a_server_that_does_not_answer_is_not_a_verdict():
    with socket.create_server((HOST, 0)) as silent, pytest.raises(ZprofError, match="did not answer one SET"):
        check(HOST, silent.getsockname()[1], request("SET"), timeout=0.5)


def test_the_honest_server_is_honest(server):
    """The fake the checks above trust: it stores, counts and flushes."""
    port = server().port
    with socket.create_connection((HOST, port)) as client:
        client.sendall(encode([b"SET", b"k", b"v"]) + encode([b"DBSIZE"]) + encode([b"FLUSHALL"]) +
                       encode([b"DBSIZE"]))
        replies = b""
        while replies.count(b"\r\n") < 4:
            replies += client.recv(1024)
    assert replies == b"+OK\r\n:1\r\n+OK\r\n:0\r\n"


# End to end on minikv -----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("command", "phrase"), [
    ("DBSIZE", "DBSIZE is unsupported (answers DBSIZE with a status reply, not an integer)"),
    ("MSET", "MSET is unsupported (answers +OK without doing it)"),
])
def test_allocs_of_a_command_minikv_fakes_is_bad_input(run_zprof, tmp_path, command, phrase):
    done = run_zprof("allocs", command, "--project", str(MINIKV), *FAULT, "--requests", "2000",
                     "--output", str(tmp_path / "out"))
    assert done.returncode == 2, done.output
    assert phrase in " ".join(done.output.split()) and "Traceback" not in done.output


@pytest.mark.slow
def test_allocs_of_mset_without_the_fault_measures_it(allocs_json):
    run = allocs_json("MSET", "--requests", "2000")
    assert run["requests"] == 2000 and run["analysis"]["per_request"]["allocs"] > 0
    assert not [note for note in run["notes"] if "unsupported" in json.dumps(note)]


@pytest.mark.slow
def test_allocs_where_flushall_and_dbsize_are_faked_computes_nothing_from_them(run_zprof, tmp_path):
    done = run_zprof("allocs", "SET", "--project", str(MINIKV), *FAULT, "--requests", "2000",
                     "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.output
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["analysis"]["kept_bytes_per_request"] is None and run["analysis"]["keys"] is None
    notes = {note["code"]: note["values"] for note in run["notes"]}
    assert notes["allocs.no-flushall"]["reason"] == "unsupported (answers +OK without doing it)"
    assert "unsupported (answers DBSIZE with a status reply" in notes["allocs.no-dbsize"]["reason"]
    printed = " ".join(done.stdout.split())
    assert "FLUSHALL could not show which retained bytes were stored data (unsupported (answers +OK" in printed


@pytest.mark.slow
def test_init_lists_what_minikv_fakes_and_leaves_it_out(run_zprof):
    done = run_zprof("init", "--project", str(MINIKV), *FAULT, "--dry-run")
    assert done.returncode == 0, done.output
    text = done.stdout[done.stdout.index("# zprof's settings"):done.stdout.index("(--dry-run")]
    config = tomllib.loads(text)
    commands = config["workload"]["commands"]
    assert "MSET" not in commands and "PUBLISH" not in commands and {"SET", "ZADD", "HSET"} <= set(commands)
    assert config["server"]["answers"] == ["CONFIG GET"]
    unsupported = {line.split(":")[0]: line for line in config["server"]["unsupported"]}
    assert set(unsupported) == {"MSET", "PUBLISH", "FLUSHALL", "DBSIZE", "INFO"}
    assert unsupported["MSET"].startswith("MSET: unsupported (answers +OK without doing it)")
    assert unsupported["DBSIZE"].startswith("DBSIZE: unsupported (answers DBSIZE with a status reply, not an integer)")
    assert "no leak check" in unsupported["FLUSHALL"]


@pytest.mark.slow
def test_bench_measures_only_what_minikv_does_and_no_memory_per_key(run_zprof, tmp_path):
    """minikv implements ZADD, so the commands it fakes under the fault are MSET (by its effect) and PUBLISH (by
    its type): of SET, MSET and PUBLISH only SET is measured; DBSIZE is faked, so no memory per key."""
    done = run_zprof("bench", "--project", str(MINIKV), *FAULT, "--commands", "SET,MSET,PUBLISH", "--trials", "2",
                     "--requests", "2000", "--keys", "1000", "--min-trial-seconds", "0.5",
                     "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.output
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [command["command"] for command in run["commands"]] == ["SET"]
    assert {trial["command"] for trial in run["trials"]} == {"SET"}
    limitations = {note["code"]: note["values"] for note in run["limitations"]}
    assert limitations["bench.unsupported"]["commands"] == {
        "MSET": "unsupported (answers +OK without doing it)",
        "PUBLISH": "unsupported (answers PUBLISH with a status reply, not an integer)"}
    assert "DBSIZE is unsupported" in limitations["bench.no-memory-per-key"]["reason"]
    assert run["memory"]["target"] is None and run["memory"]["verdict"] is None
    printed = " ".join(done.stdout.split())
    assert "Neither measured nor judged: MSET unsupported (answers +OK without doing it)" in printed
    assert "Memory per key is not computed: DBSIZE is unsupported" in printed


@pytest.mark.slow
def test_bench_of_only_commands_minikv_fakes_is_bad_input(run_zprof, tmp_path):
    done = run_zprof("bench", "--project", str(MINIKV), *FAULT, "--commands", "MSET", "--trials", "2",
                     "--keys", "0", "--output", str(tmp_path / "out"))
    assert done.returncode == 2, done.output
    assert "MSET is unsupported (answers +OK without doing it)" in " ".join(done.output.split())


@pytest.mark.slow
def test_memory_where_flushall_is_faked_has_no_phase_after_it_and_no_leak_verdict(run_zprof, tmp_path):
    done = run_zprof("memory", "--project", str(MINIKV), *FAULT, "--command", "SET", "--duration", "1",
                     "--interval", "0.1", "--min-trial-seconds", "0.5", "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.output
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    analysis = run["analysis"]
    assert "after FLUSHALL" not in {phase["kind"] for phase in analysis["phases"]}
    assert analysis["leak"]["checked"] is False and analysis["growth"]["given_back_bytes"] is None
    assert [verdict["kind"] for verdict in analysis["verdicts"] if verdict["kind"] != "flat"] == ["unchecked"]
    notes = {note["code"]: note["values"] for note in run["notes"]}
    assert notes["memory.no-flushall"]["reason"] == "unsupported (answers +OK without doing it)"
    assert "memory.no-dbsize" in notes


@pytest.mark.slow
def test_a_full_minikv_refuses_new_keys(run_zprof, tmp_path):
    """`--full-after N`: writes of new keys fail once N keys are stored, the measured ones of allocs among them
    (its run writes keys its warm-up never made)."""
    done = run_zprof("allocs", "SET", "--project", str(MINIKV), "--server-args", "--full-after 100",
                     "--requests", "2000", "--warmup", "200", "--output", str(tmp_path / "out"))
    assert done.returncode == 1, done.output
    assert "got an error reply" in done.output and "ERR out of memory" in done.output
