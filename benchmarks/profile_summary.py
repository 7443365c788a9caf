"""Where zprof's own time went, from the speedscope files `make profile` records with py-spy.

For each file: the wall time of the main thread, the time spent importing modules, and
zprof's own functions by inclusive wall time (py-spy ran with --idle, so waiting on a
server, a subprocess or a sleep counts), then the same for every other thread (the load
driver's). Open the files in https://www.speedscope.app for the full picture.

    python benchmarks/profile_summary.py FILE.speedscope.json [...] [--top 25]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def frame_label(frame: dict) -> str:
    file = frame.get("file", "")
    for marker in ("/zprof/", "site-packages/"):
        if marker in file:
            file = ("zprof/" if marker == "/zprof/" else "") + file.split(marker, 1)[1]
            break
    return f"{frame['name']} ({file}:{frame.get('line')})"


def summarise(path: Path, top: int) -> None:
    document = json.loads(path.read_text())
    frames = document["shared"]["frames"]
    print(f"== {path}")
    for profile in document["profiles"]:
        total = sum(profile["weights"])
        inclusive: Counter[str] = Counter()
        importing = 0.0
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            labels = {frame_label(frames[index]) for index in stack}
            for label in labels:
                if "(zprof/" in label and not label.startswith("<module>"):
                    inclusive[label] += weight
            if any(frames[index]["name"] == "_find_and_load" for index in stack):
                importing += weight
        print(f"  {profile['name']}: {total:.2f} s in all, {importing:.2f} s importing modules")
        for label, seconds in inclusive.most_common(top):
            print(f"    {seconds:7.2f} s  {100 * seconds / total:5.1f}%  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        summarise(path, args.top)


if __name__ == "__main__":
    main()
