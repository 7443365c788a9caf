"""What each key costs, by type: the container whose allocation grew with the keys (a hash map's or an array
list's method among the holder's frames), the layout of its slot from the binary's DWARF, the element that
makes the slot large and the member chain inside it, and what boxing that chain's first member would save
per key, measured against the bytes the holder kept per new key.

The saving is `slots per new key * (element size - its size with the member boxed)`: the container's
capacity per key (the holder's bytes per new key over the slot's size) times what each slot would lose. It
leaves out the boxed payload itself, which a key that never uses that variant never allocates."""

from __future__ import annotations

import re
from pathlib import Path

from zprof.analysis.layout import (
    LayoutReader,
    TypeLayout,
    boxed_size,
    cause,
    container_name,
    render,
    slot_size,
    type_arguments,
    zig_name,
)
from zprof.model.memory import EntryLayout, KeyHolder
from zprof.units import human_bytes

# Zig's std containers whose one allocation holds every entry (a hash map's keys, values and metadata; an array
# list's items): a method of one of these among a holder's frames names the container that holds the memory.
CONTAINER_PREFIXES = ("hash_map.HashMapUnmanaged(", "hash_map.HashMap(", "array_hash_map.ArrayHashMapUnmanaged(",
                      "array_hash_map.ArrayHashMap(", "array_list.Aligned(", "array_list.AlignedManaged(",
                      "array_list.ArrayListAligned(", "array_list.ArrayListAlignedUnmanaged(",
                      "multi_array_list.MultiArrayList(")
# Holders looked at, most bytes per new key first; a holder under this share of the largest is not.
HOLDERS = 3
HOLDER_SHARE = 0.1
_WHERE = re.compile(r" \([^()]*:\d+\)$")  # " (std/hash_map.zig:1097)" after an inlined frame's name


def _container(holder: KeyHolder) -> str | None:
    """The container type whose method is among the holder's frames, innermost first."""
    for frame in [_WHERE.sub("", name) for name in reversed(holder.inlined)] + [holder.function]:
        owner = container_name(frame)
        if owner.startswith(CONTAINER_PREFIXES) and type_arguments(owner):
            return owner
    return None


def entry_layouts(binary: Path, holders: list[KeyHolder]) -> list[EntryLayout]:
    """The entry layout of each container among the largest holders; none for a binary without DWARF."""
    if not holders:
        return []
    largest = holders[0].bytes_per_new_key
    wanted = [(holder, name) for holder in holders[:HOLDERS]
              if holder.bytes_per_new_key >= HOLDER_SHARE * largest and (name := _container(holder)) is not None]
    if not wanted:
        return []
    found = []
    with LayoutReader(binary) as reader:
        layouts = reader.layouts([name for _, name in wanted])
        for holder, name in wanted:
            container = layouts.get(name)
            if container is not None and (entry := _entry(holder, container, layouts)) is not None:
                found.append(entry)
    return found


def _entry(holder: KeyHolder, container: TypeLayout, layouts: dict[str, TypeLayout]) -> EntryLayout | None:
    slot = slot_size(container, layouts)
    held = [layouts[type_name] for role, type_name in container.elements
            if role in ("key", "value", "element") and type_name in layouts]
    if not slot or not held:
        return None
    element = max(held, key=lambda layout: layout.size)
    chain = cause(element, layouts)
    boxed = boxed_size(element, chain[0]) if chain else None
    slots = holder.bytes_per_new_key / slot
    return EntryLayout(
        function=holder.function, file=holder.file, line=holder.line, container=zig_name(container.name),
        slot_bytes=slot, bytes_per_new_key=round(holder.bytes_per_new_key, 1), slots_per_new_key=round(slots, 3),
        element=zig_name(element.name), element_bytes=element.size,
        cause=[f"{member.name}: {zig_name(member.type_name)} ({member.size:,} B)" for member in chain],
        boxed_bytes=boxed, saving_per_key=round(slots * (element.size - boxed), 1) if boxed is not None else None,
        layout=render(element))


def entry_sentence(entry: EntryLayout) -> str:
    """Where the bytes per key are, by type: the slot, its largest element, the chain that makes it large, and
    what boxing the chain's first member would save."""
    text = (f"{entry.function} keeps {human_bytes(entry.bytes_per_new_key)} per "
            f"new key in {entry.container}: {entry.slots_per_new_key:.2f} slots per key (its capacity) of "
            f"{entry.slot_bytes:,} B, each holding a {entry.element} of {entry.element_bytes:,} B")
    if entry.cause:
        text += ", made large by " + " > ".join(entry.cause)
    if entry.boxed_bytes is not None and entry.saving_per_key is not None:
        member = entry.cause[0].split(":", 1)[0]
        text += (f"; holding `{member}` through a pointer would make {entry.element} {entry.boxed_bytes:,} B and save "
                 f"{human_bytes(entry.saving_per_key)} per key ({entry.saving_per_key / entry.bytes_per_new_key:.0%} "
                 "of what the site keeps per key)")
    return text + "."
