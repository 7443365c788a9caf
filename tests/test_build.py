"""zprof build: the shim overlay, the cache, and a checkout left untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MINIKV, REPO
from zprof.builder.shim import patch_allocator_source
from zprof.errors import ZprofError


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.slow
def test_build_leaves_the_checkout_untouched_and_is_cached(run_zprof, tmp_path):
    checkout = tmp_path / "minikv"
    shutil.copytree(MINIKV, checkout, ignore=shutil.ignore_patterns(".zig-cache", "zig-out"))
    before = tree_state(checkout)
    first = run_zprof("build", "--project", str(checkout))
    assert first.returncode == 0, first.output
    binary = Path(first.stdout.strip().splitlines()[-1])
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert not binary.is_relative_to(checkout)
    second = run_zprof("build", "--project", str(checkout))
    assert second.returncode == 0, second.output
    assert "cached" in second.stderr
    assert second.stdout.strip() == first.stdout.strip()
    assert tree_state(checkout) == before


@pytest.mark.slow
@pytest.mark.smoke
def test_shim_hooks_pass_their_zig_unit_tests(zig_exe):
    done = subprocess.run([zig_exe, "test", "zig_hooks/zprof_hooks.zig"], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    for name in ("a resize hands the block to the site that resized it",
                 "an address handed out again without a free is a release en bloc",
                 "full tables count what they lost, call by call and byte by byte"):
        assert f"{name}...OK" in done.stderr, done.stderr


@pytest.mark.slow
@pytest.mark.smoke
def test_minikv_passes_its_own_zig_build_test(zig_exe, tmp_path):
    """On a copy: `zig build test` makes .zig-cache/tmp in the project even with --cache-dir elsewhere, and the
    checkout must not change under the other tests that check it did not (tests/faults' minikv_digest)."""
    copy = tmp_path / "minikv"
    shutil.copytree(MINIKV, copy, ignore=shutil.ignore_patterns(".zig-cache", "zig-out"))
    done = subprocess.run([zig_exe, "build", "test", "--cache-dir", str(tmp_path / "cache"),
                           "--prefix", str(tmp_path / "out")],
                          cwd=copy, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr


def test_a_std_of_another_shape_is_refused_with_the_zig_version():
    with pytest.raises(ZprofError) as raised:
        patch_allocator_source("pub fn rawAlloc() void {}", "0.16.0")
    assert "0.16.0" in raised.value.message
    assert "0.15" in raised.value.detail


def test_the_allocator_of_zig_0_15_is_patched_in_all_four_places(zig_exe):
    source = (Path(zig_exe).parent / "lib" / "std" / "mem" / "Allocator.zig").read_text()
    patched = patch_allocator_source(source, "0.15.2")
    for call in ("alloc", "resize", "remap", "free"):
        assert f"return zprof_hooks.{call}(a, " in patched
    assert "a.vtable." not in patched
