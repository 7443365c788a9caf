"""The counting-allocator shim: an overlay of Zig's lib directory.

`zig build --zig-lib-dir OVERLAY` compiles the target against OVERLAY, a copy
of the compiler's `lib/std` (everything else in `lib/` is a symlink) in which
`std/mem/Allocator.zig` sends its four raw calls through `zig_hooks/`. Every
allocator layer funnels through those four calls, so the target's sources stay
untouched.

The massif variant of the overlay differs in one line of the hooks, which
makes them also tell valgrind about each block the program holds, so that
massif sees Zig's allocations (it only sees malloc by itself).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from zprof import registry
from zprof.builder import stamp
from zprof.builder.toolchain import Zig
from zprof.errors import ZprofError

HOOKS_DIR = Path(__file__).resolve().parents[2] / "zig_hooks"
HOOKS_FILE = "zprof_hooks.zig"
ENV_VAR = "ZPROF_SHM"
COUNTING = "counting"
MASSIF = "massif"
# (the hooks' switch as written, what the massif overlay says instead)
_MASSIF_SWITCH = (b"pub const massif_client_requests = false;", b"pub const massif_client_requests = true;")

# (what Zig 0.15's Allocator.zig says, what the overlay says instead)
_PATCHES = [
    (
        "return a.vtable.alloc(a.ptr, len, alignment, ret_addr);",
        "return zprof_hooks.alloc(a, len, alignment, ret_addr);",
    ),
    (
        "return a.vtable.resize(a.ptr, memory, alignment, new_len, ret_addr);",
        "return zprof_hooks.resize(a, memory, alignment, new_len, ret_addr);",
    ),
    (
        "return a.vtable.remap(a.ptr, memory, alignment, new_len, ret_addr);",
        "return zprof_hooks.remap(a, memory, alignment, new_len, ret_addr);",
    ),
    (
        "return a.vtable.free(a.ptr, memory, alignment, ret_addr);",
        "return zprof_hooks.free(a, memory, alignment, ret_addr);",
    ),
]
_IMPORT_ANCHOR = "const Allocator = @This();\n"
_IMPORT = 'const zprof_hooks = @import("../zprof_hooks.zig");\n'


def hooks_source(variant: str = COUNTING) -> bytes:
    path = HOOKS_DIR / HOOKS_FILE
    if not path.is_file():
        raise ZprofError(f"zprof's Zig hooks are missing: {path} (is zprof installed from its checkout?)")
    source = path.read_bytes()
    if variant == MASSIF:
        switch_off, switch_on = _MASSIF_SWITCH
        if source.count(switch_off) != 1:
            raise ZprofError(f"zprof's Zig hooks have no massif switch (`{switch_off.decode()}`): {path}")
        source = source.replace(switch_off, switch_on)
    elif variant != COUNTING:
        raise ValueError(f"unknown shim variant {variant!r}")
    return source


def shim_fingerprint(variant: str = COUNTING) -> str:
    """Names an overlay; the variants differ in their hooks' text, so in this too."""
    digest = hashlib.sha256(hooks_source(variant))
    for original, replacement in _PATCHES:
        digest.update(original.encode() + replacement.encode())
    return digest.hexdigest()[:16]


def patch_allocator_source(source: str, zig_version: str) -> str:
    """Allocator.zig with the hooks in, or a clear error when its shape differs."""
    missing = [original for original, _ in _PATCHES if source.count(original) != 1]
    if missing or source.count(_IMPORT_ANCHOR) != 1:
        what = missing[0] if missing else _IMPORT_ANCHOR.strip()
        raise ZprofError(
            f"zprof's allocation shim supports Zig 0.15's std.mem.Allocator, but Zig {zig_version} "
            f"has a different shape (this line was not found once: `{what}`)",
            detail="Run zprof with Zig 0.15.x (`pip install ziglang==0.15.2`, then --zig PATH).",
        )
    for original, replacement in _PATCHES:
        source = source.replace(original, replacement)
    return source.replace(_IMPORT_ANCHOR, _IMPORT_ANCHOR + _IMPORT)


def overlay_lib_dir(zig: Zig, cache_root: Path, variant: str = COUNTING) -> Path:
    """The overlay for this compiler and shim variant, made once and reused while its stamp holds."""
    fingerprint = shim_fingerprint(variant)
    key = f"{zig.lib_dir}|{fingerprint}"
    entry = cache_root / "overlays" / f"zig-{zig.version}-{fingerprint}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    overlay = entry / "lib"
    if stamp.verified(entry, key):
        return overlay
    allocator_file = zig.lib_dir / "std" / "mem" / "Allocator.zig"
    if not allocator_file.is_file():
        raise ZprofError(f"Zig {zig.version}'s lib directory has no std/mem/Allocator.zig: {zig.lib_dir}")
    patched = patch_allocator_source(allocator_file.read_text(), zig.version)

    stamp.discard(entry)  # half-made, damaged, or from a zprof before stamps
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{entry.name}.partial-", dir=entry.parent))
    run = registry.current()
    run.add_directory(staging)
    try:
        lib = staging / "lib"
        lib.mkdir()
        for item in zig.lib_dir.iterdir():
            if item.name != "std":
                os.symlink(item, lib / item.name)
        # std is copied, not linked: Zig resolves a module's files under its
        # root directory, and the hooks file must sit inside it.
        shutil.copytree(zig.lib_dir / "std", lib / "std", symlinks=True)
        (lib / "std" / "mem" / "Allocator.zig").write_text(patched)
        (lib / "std" / HOOKS_FILE).write_bytes(hooks_source(variant))
        stamp.write_stamp(staging, key, [lib / "std" / "mem" / "Allocator.zig", lib / "std" / HOOKS_FILE])
        stamp.put_in_place(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        run.remove_directory(staging)
    return overlay
