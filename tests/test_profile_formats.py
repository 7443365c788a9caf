"""The speedscope and pprof files zprof writes, checked by independent readers.

speedscope: the official JSON schema (tests/data/speedscope-file-format-schema.json, from the
speedscope npm package 1.25.0, dist/release/file-format-schema.json), a validator written here for
the rules the schema cannot state, and, in a slow test, the real viewer in headless Chromium.
pprof: a protobuf wire decoder written here, apart from zprof's encoder, and `go tool pprof` when Go is there.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import jsonschema
import pytest

from zprof import __version__
from zprof.analysis.stacks import Frame, ProfileBuilder, StackProfile
from zprof.report.pprof import ValueType, pprof_bytes, write_pprof
from zprof.report.speedscope import SCHEMA_URL, speedscope_document, write_speedscope

SCHEMA = json.loads((Path(__file__).parent / "data" / "speedscope-file-format-schema.json").read_text())
SPEEDSCOPE_VERSION = "1.25.0"  # the viewer the slow test loads; the vendored schema came from it
GENERIC = "array_list.Aligned(u8,null).appendSlice"

MAIN = Frame("main", "src/main.zig", 10)
HANDLE = Frame("server.handle", "src/server.zig", 40)
APPEND = Frame(GENERIC, "/zig/lib/std/array_list.zig", 300, kind="std")
COPY = Frame("mem.copyForwards", "/zig/lib/std/mem.zig", 200, kind="std", inlined=True)  # inlined into APPEND
MEMCPY = Frame("memcpy", kind="libc")
SYSCALL = Frame("entry_SYSCALL_64", kind="kernel")
FREQUENCY_HZ = 997


def two_threads(unit: str = "samples", frequency_hz: int | None = FREQUENCY_HZ) -> StackProfile:
    builder = ProfileBuilder(unit)
    builder.add("minikv 101", [MAIN, HANDLE, APPEND, COPY, MEMCPY], 7)
    builder.add("minikv 101", [MAIN, HANDLE], 2)
    builder.add("minikv 101", [MAIN, HANDLE, SYSCALL], 1)
    builder.add("minikv 102", [MAIN, HANDLE, APPEND], 3)
    return builder.build(frequency_hz=frequency_hz, duration_s=2.0, recorded_samples=13)


# --- speedscope ---------------------------------------------------------------------------------


def check_speedscope(document: dict, profile: StackProfile) -> None:
    """The zprof issue's rules for a speedscope file, on top of the schema."""
    assert document["$schema"] == SCHEMA_URL
    assert document["exporter"] == f"zprof {__version__}"
    assert document["activeProfileIndex"] == 0
    frames = document["shared"]["frames"]
    for frame in frames:
        # Unknown file or line is left out: the schema types them as string and number.
        assert frame.get("file", "") is not None and frame.get("line", 0) is not None
    threads = {sample.thread for sample in profile.samples}
    assert sorted(p["name"] for p in document["profiles"]) == sorted(threads), "one profile per thread"
    for sampled in document["profiles"]:
        assert sampled["type"] == "sampled"
        assert sampled["unit"] == "none"
        assert len(sampled["samples"]) == len(sampled["weights"])
        assert all(0 <= index < len(frames) for stack in sampled["samples"] for index in stack)
        assert sampled["startValue"] == 0
        assert sampled["endValue"] == sum(sampled["weights"])
    # Root first, file and line where known: every zprof stack is there by name, in its order.
    written = [
        (p["name"], tuple((frames[i]["name"], frames[i].get("file"), frames[i].get("line")) for i in stack), weight)
        for p in document["profiles"] for stack, weight in zip(p["samples"], p["weights"], strict=True)
    ]
    expected = [
        (s.thread, tuple((profile.frames[i].name, profile.frames[i].file, profile.frames[i].line) for i in s.stack),
         s.weight)
        for s in profile.samples
    ]
    assert sorted(written) == sorted(expected)


def names_by_thread(document: dict) -> dict[str, list[list[str]]]:
    frames = document["shared"]["frames"]
    return {p["name"]: [[frames[i]["name"] for i in stack] for stack in p["samples"]] for p in document["profiles"]}


def test_speedscope_document_follows_the_schema_and_the_rules():
    profile = two_threads()
    document = speedscope_document(profile, "minikv ZADD")
    jsonschema.validate(document, SCHEMA)
    check_speedscope(document, profile)
    assert document["name"] == "minikv ZADD"
    # The busiest thread opens first.
    assert [(p["name"], p["endValue"]) for p in document["profiles"]] == [("minikv 101", 10), ("minikv 102", 3)]


def test_speedscope_stacks_are_root_first_with_the_zig_generic_name_intact():
    document = speedscope_document(two_threads(), "minikv")
    stacks = names_by_thread(document)
    assert ["main", "server.handle", GENERIC, "mem.copyForwards", "memcpy"] in stacks["minikv 101"]
    assert stacks["minikv 102"] == [["main", "server.handle", GENERIC]]


def test_speedscope_frames_carry_file_and_line_only_when_known():
    frames = {frame["name"]: frame for frame in speedscope_document(two_threads(), "minikv")["shared"]["frames"]}
    assert frames[GENERIC] == {"name": GENERIC, "file": "/zig/lib/std/array_list.zig", "line": 300}
    assert frames["memcpy"] == {"name": "memcpy"}
    assert frames["entry_SYSCALL_64"] == {"name": "entry_SYSCALL_64"}


def test_speedscope_merges_frames_it_cannot_tell_apart():
    builder = ProfileBuilder()
    builder.add("t 1", [MAIN, COPY])
    builder.add("t 1", [MAIN, Frame(COPY.name, COPY.file, COPY.line, kind="std", inlined=False)])
    profile = builder.build()
    document = speedscope_document(profile, "inlined or not")
    check_speedscope(document, profile)
    assert [frame["name"] for frame in document["shared"]["frames"]] == ["main", "mem.copyForwards"]


def test_instruction_counts_keep_unit_none():
    profile = two_threads(unit="instructions", frequency_hz=None)
    document = speedscope_document(profile, "callgrind")
    jsonschema.validate(document, SCHEMA)
    check_speedscope(document, profile)


def test_empty_profile_gives_a_file_without_profiles():
    # speedscope opens it and says "Successfully imported profile, but it's empty!" (the slow test sees it).
    document = speedscope_document(StackProfile(), "")
    jsonschema.validate(document, SCHEMA)
    check_speedscope(document, StackProfile())
    assert document["profiles"] == [] and document["shared"]["frames"] == []
    assert document["name"], "speedscope falls back to profiles[0].name, which an empty file lacks"


@pytest.mark.parametrize("break_it", [
    lambda d: d.update({"$schema": SCHEMA_URL.replace("https", "http")}),
    lambda d: d["profiles"][0]["weights"].pop(),
    lambda d: d["profiles"][0]["samples"][0].reverse(),
    lambda d: d["profiles"][0]["samples"][0].append(len(d["shared"]["frames"])),
    lambda d: d["profiles"][0].update({"endValue": 1}),
    lambda d: d["profiles"].pop(),
    lambda d: d["shared"]["frames"][0].update({"file": None}),
], ids=["schema-url", "lengths", "leaf-first", "index-range", "end-value", "missing-thread", "null-file"])
def test_the_rule_checker_catches_broken_files(break_it):
    profile = two_threads()
    document = speedscope_document(profile, "minikv")
    break_it(document)
    with pytest.raises(AssertionError):
        check_speedscope(document, profile)


def test_write_speedscope_writes_the_document(tmp_path):
    path = tmp_path / "profile.speedscope.json"
    write_speedscope(two_threads(), "minikv", path)
    assert json.loads(path.read_text()) == speedscope_document(two_threads(), "minikv")


# --- speedscope's own viewer in headless Chromium -------------------------------------------------


@pytest.fixture(scope="module")
def speedscope_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """speedscope's built viewer (dist/release) from its npm package: no network once packed."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: it fetches the speedscope viewer")
    work = tmp_path_factory.mktemp("speedscope")
    done = subprocess.run([npm, "pack", f"speedscope@{SPEEDSCOPE_VERSION}", "--silent"], cwd=work,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stderr
    with tarfile.open(work / done.stdout.strip().splitlines()[-1]) as archive:
        archive.extractall(work, filter="data")
    return work / "package" / "dist" / "release"


@dataclass
class Viewer:
    driver: object  # selenium's WebDriver, imported only by the slow tests
    url: str
    root: Path


@pytest.fixture(scope="module")
def viewer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    """The viewer and the profiles on one local HTTP server (speedscope fetches profileURL; file:// can't)."""
    from tests.browser import headless_chromium, missing_browser

    if reason := missing_browser():
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("served")
    shutil.copytree(request.getfixturevalue("speedscope_release"), root / "viewer")

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with headless_chromium(tmp_path_factory.mktemp("chromium-profile"), width=1280, height=800) as driver:
            yield Viewer(driver, f"http://127.0.0.1:{server.server_address[1]}", root)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def open_in_viewer(viewer: Viewer, document: dict, file_name: str, view: str = "time-ordered",
                   expect_text: str = "") -> tuple[str | None, str]:
    """Loads a document as speedscope's #profileURL; returns (alert text or None, page text) once settled.

    The flame charts are drawn on a canvas; the sandwich view's table is the part with frame names in the DOM.
    """
    from selenium.common.exceptions import NoAlertPresentException, UnexpectedAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import TIMEOUT_S

    (viewer.root / file_name).write_text(json.dumps(document))
    driver = viewer.driver
    driver.get("about:blank")  # a new hash on the same page would not reload it
    profile_url = quote(f"{viewer.url}/{file_name}", safe="")
    driver.get(f"{viewer.url}/viewer/index.html#profileURL={profile_url}&view={view}")

    def settled(driver) -> tuple[str | None, str] | None:  # type: ignore[no-untyped-def]
        # speedscope reports an unreadable or empty file with alert(), a crash with "Something went wrong".
        try:
            return driver.switch_to.alert.text, ""
        except NoAlertPresentException:
            pass
        try:
            text = driver.find_element(By.TAG_NAME, "body").text
            title = driver.title
        except UnexpectedAlertPresentException:
            return None  # the alert came up just now: the next poll reads it
        if (title.endswith(" - speedscope") and expect_text in text) or "Something went wrong" in text:
            return None, text
        return None

    return WebDriverWait(driver, TIMEOUT_S, poll_frequency=0.2).until(
        settled, message="speedscope neither showed the profile nor an error")


def severe_console_entries(viewer: Viewer) -> list[dict]:
    return [entry for entry in viewer.driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.slow
def test_speedscope_viewer_opens_the_file(viewer, tmp_path):
    name = "minikv ZADD"
    alert, text = open_in_viewer(viewer, speedscope_document(two_threads(), name), "two-threads.speedscope.json")
    assert alert is None, alert
    assert viewer.driver.title == f"{name} - speedscope"
    assert "Something went wrong" not in text
    assert "minikv 101" in text, text  # the thread picker in the toolbar
    assert severe_console_entries(viewer) == []
    viewer.driver.save_screenshot(str(tmp_path / "speedscope.png"))

    alert, text = open_in_viewer(viewer, speedscope_document(two_threads(), name), "two-threads.speedscope.json",
                                 view="sandwich", expect_text=GENERIC)
    assert alert is None, alert
    assert GENERIC in text and "memcpy" in text and "Something went wrong" not in text
    assert severe_console_entries(viewer) == []


@pytest.mark.slow
def test_the_viewer_check_sees_a_file_speedscope_cannot_read(viewer):
    document = speedscope_document(two_threads(), "broken")
    document["profiles"][0]["weights"].pop()
    alert, text = open_in_viewer(viewer, document, "broken.speedscope.json")
    assert alert is None and "Something went wrong" in text


@pytest.mark.slow
def test_speedscope_viewer_calls_the_empty_file_empty(viewer):
    alert, _ = open_in_viewer(viewer, speedscope_document(StackProfile(), "empty"), "empty.speedscope.json")
    assert alert == "Successfully imported profile, but it's empty!"
    viewer.driver.switch_to.alert.accept()
    assert severe_console_entries(viewer) == []


# --- pprof ----------------------------------------------------------------------------------------


def decode_fields(data: bytes) -> dict[int, list[int | bytes]]:
    """Any protobuf message to {field number: values}: ints for varint and fixed, bytes for length-delimited."""
    fields: dict[int, list[int | bytes]] = {}
    position = 0

    def varint() -> int:
        nonlocal position
        result = shift = 0
        while True:
            byte = data[position]
            position += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result

    while position < len(data):
        key = varint()
        field, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value = varint()
        elif wire_type == 2:
            length = varint()
            value = data[position:position + length]
            assert len(value) == length, "truncated field"
            position += length
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value = int.from_bytes(data[position:position + size], "little")
            position += size
        else:
            raise AssertionError(f"wire type {wire_type} at byte {position}")
        fields.setdefault(field, []).append(value)
    return fields


def repeated_ints(values: list[int | bytes]) -> list[int]:
    """A repeated integer field, packed (one length-delimited blob of varints) or not."""
    out: list[int] = []
    for value in values:
        if isinstance(value, bytes):
            out.extend(unpack_varints(value))
        else:
            out.append(value)
    return out


def unpack_varints(blob: bytes) -> list[int]:
    values, result, shift = [], 0, 0
    for byte in blob:
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            values.append(result)
            result = shift = 0
    assert shift == 0, "packed field ends inside a varint"
    return values


def one(fields: dict[int, list[int | bytes]], number: int, default: int = 0) -> int:
    values = fields.get(number, [default])
    assert len(values) == 1 and isinstance(values[0], int)
    return values[0]


@dataclass
class DecodedPprof:
    strings: list[str]
    sample_types: list[tuple[str, str]]
    samples: list[tuple[list[list[str]], list[int], dict[str, str]]]  # leaf-first locations' function names
    functions: dict[str, dict[str, object]]
    period_type: tuple[str, str] | None
    period: int
    duration_nanos: int


def decode_pprof(gzipped: bytes) -> DecodedPprof:
    top = decode_fields(gzip.decompress(gzipped))
    strings = [value.decode() for value in top.get(6, []) if isinstance(value, bytes)]

    def value_type(blob: int | bytes) -> tuple[str, str]:
        fields = decode_fields(blob)  # type: ignore[arg-type]
        return strings[one(fields, 1)], strings[one(fields, 2)]

    functions = {}
    for blob in top.get(5, []):
        fields = decode_fields(blob)  # type: ignore[arg-type]
        functions[one(fields, 1)] = {"name": strings[one(fields, 2)], "system_name": strings[one(fields, 3)],
                                     "filename": strings[one(fields, 4)], "start_line": one(fields, 5)}
    locations = {}
    for blob in top.get(4, []):
        fields = decode_fields(blob)  # type: ignore[arg-type]
        lines = [decode_fields(line) for line in fields.get(4, [])]  # type: ignore[arg-type]
        locations[one(fields, 1)] = [functions[one(line, 1)]["name"] for line in lines]
    samples = []
    for blob in top.get(2, []):
        fields = decode_fields(blob)  # type: ignore[arg-type]
        labels = {}
        for label_blob in fields.get(3, []):
            label = decode_fields(label_blob)  # type: ignore[arg-type]
            labels[strings[one(label, 1)]] = strings[one(label, 2)]
        samples.append(([locations[i] for i in repeated_ints(fields.get(1, []))],
                        repeated_ints(fields.get(2, [])), labels))
    return DecodedPprof(
        strings=strings,
        sample_types=[value_type(blob) for blob in top.get(1, [])],
        samples=samples,
        functions={f["name"]: f for f in functions.values()},  # type: ignore[misc]
        period_type=value_type(top[11][0]) if 11 in top else None,
        period=one(top, 12),
        duration_nanos=one(top, 10),
    )


def flattened(locations: list[list[str]]) -> list[str]:
    return [name for location in locations for name in location]


def test_pprof_samples_are_leaf_first_with_inlined_frames_in_their_caller_location():
    profile = two_threads()
    decoded = decode_pprof(pprof_bytes(profile))
    assert len(decoded.samples) == len(profile.samples)
    for sample, (locations, values, labels) in zip(profile.samples, decoded.samples, strict=True):
        assert flattened(locations) == [profile.frames[i].name for i in reversed(sample.stack)]
        assert values[0] == sample.weight
        assert labels == {"thread": sample.thread}
    assert decoded.samples[0][0] == [["memcpy"], ["mem.copyForwards", GENERIC], ["server.handle"], ["main"]]


def test_pprof_sample_types_period_and_totals():
    profile = two_threads()
    decoded = decode_pprof(pprof_bytes(profile))
    assert decoded.strings[0] == ""
    assert len(decoded.strings) == len(set(decoded.strings))
    assert decoded.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert decoded.period_type == ("cpu", "nanoseconds")
    assert decoded.period == round(1e9 / FREQUENCY_HZ)
    assert decoded.duration_nanos == 2_000_000_000
    assert sum(values[0] for _, values, _ in decoded.samples) == profile.total_weight == 13
    assert all(values[1] == values[0] * decoded.period for _, values, _ in decoded.samples)


def test_pprof_functions_carry_names_files_and_lines():
    functions = decode_pprof(pprof_bytes(two_threads())).functions
    assert functions[GENERIC] == {"name": GENERIC, "system_name": GENERIC,
                                  "filename": "/zig/lib/std/array_list.zig", "start_line": 300}
    assert functions["memcpy"] == {"name": "memcpy", "system_name": "memcpy", "filename": "", "start_line": 0}
    assert len(functions) == 6


@pytest.mark.parametrize(("unit", "frequency_hz", "types"), [
    ("samples", None, [("samples", "count")]),
    ("instructions", None, [("instructions", "count")]),
])
def test_pprof_without_a_sampling_frequency_has_counts_only(unit, frequency_hz, types):
    decoded = decode_pprof(pprof_bytes(two_threads(unit, frequency_hz)))
    assert decoded.sample_types == types
    assert decoded.period_type is None and decoded.period == 0
    assert all(len(values) == 1 for _, values, _ in decoded.samples)


def test_pprof_of_an_empty_profile_has_types_and_no_samples():
    decoded = decode_pprof(pprof_bytes(StackProfile()))
    assert decoded.samples == [] and decoded.functions == {}
    assert decoded.sample_types == [("samples", "count")]


def test_pprof_bytes_are_deterministic(tmp_path):
    first = pprof_bytes(two_threads())
    assert first == pprof_bytes(two_threads())
    assert first[:2] == b"\x1f\x8b" and first[4:8] == bytes(4), "gzip with no timestamp"
    write_pprof(two_threads(), tmp_path / "profile.pb.gz")
    assert (tmp_path / "profile.pb.gz").read_bytes() == first


def test_varints_match_the_protobuf_documentation():
    # protobuf's encoding guide: field 1 = 150 is 08 96 01; a negative int64 takes ten bytes.
    assert ValueType(150, 0).encode() == b"\x08\x96\x01"
    assert ValueType(-1, 0).encode() == b"\x08" + b"\xff" * 9 + b"\x01"


@pytest.mark.slow
def test_go_tool_pprof_reads_the_file(tmp_path):
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed (Debian's golang-go brings `go tool pprof`)")
    path = tmp_path / "profile.pb.gz"
    write_pprof(two_threads(), path)

    def pprof(*args: str) -> str:
        done = subprocess.run([go, "tool", "pprof", *args, str(path)], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                                             "PPROF_TMPDIR": str(tmp_path)}, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    top = pprof("-top", "-sample_index=samples")
    assert "Type: samples" in top
    rows = {line.split()[-1]: line.split() for line in top.splitlines() if line.strip().endswith(("memcpy", "main"))}
    assert rows["memcpy"][0] == "7", top  # flat samples of the leaf
    assert rows["main"][3] == "13", top  # cumulative: every sample passes through main
    assert "Duration: 2s" in top
    traces = pprof("-traces", "-sample_index=samples")
    # -traces prints each stack leaf first, the count on its first line, inlined frames marked.
    stacks = [
        [re.sub(r"^\s*\d*\s+|\s\(inline\)$", "", line) for line in block.splitlines() if line.strip()]
        for block in re.split(r"^-+\+-+$", traces, flags=re.MULTILINE)
    ]
    assert ["thread:  minikv 101", "memcpy", "mem.copyForwards", GENERIC, "server.handle", "main"] in stacks, traces
    assert ["thread:  minikv 102", GENERIC, "server.handle", "main"] in stacks, traces
