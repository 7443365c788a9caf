"""The one way zprof writes sizes, signed sizes and size classes."""

from __future__ import annotations

_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def human_bytes(count: float) -> str:
    """1.5 KiB, 38 B, 0.7 B; negative counts keep their sign."""
    if abs(count) < 0.05:  # what would print as "-0.0 B"
        return "0 B"
    sign = "-" if count < 0 else ""
    count = abs(count)
    for unit, size in _UNITS:
        if count >= size:
            return f"{sign}{count / size:.1f} {unit}"
    return f"{sign}{count:.0f} B" if count >= 10 or count == 0 else f"{sign}{count:.1f} B"


def signed_bytes(count: float) -> str:
    return ("+" if count > 0 else "") + human_bytes(count)


def size_class_label(min_bytes: int, max_bytes: int) -> str:
    """A power-of-two class of allocation sizes: "32-63 B", "2.0 MiB-4.0 MiB"."""
    if min_bytes < 1024:
        return f"{min_bytes}-{max_bytes} B" if min_bytes != max_bytes else f"{min_bytes} B"
    return f"{human_bytes(min_bytes)}-{human_bytes(max_bytes + 1)}"
