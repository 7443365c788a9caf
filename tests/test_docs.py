"""The documentation agrees with the program: every example block in README.md and docs/ is what zprof prints
for the saved run it was made from (and `--help` as click prints it; `init` and `doctor` run now, compared
beyond numbers and paths), every saved run reads with this zprof, and every page the README promises exists.
`make docs` makes the blocks again from real runs when one is stale."""

from __future__ import annotations

import re

import pytest

from tests import docs_examples
from tests.docs_examples import EXAMPLES, PAGES, REPO, Pages


def test_every_example_block_is_what_zprof_prints(zprof_env, monkeypatch):
    for name in ("ZPROF_CACHE", "ZIG"):
        monkeypatch.setenv(name, zprof_env[name])
    stale = docs_examples.check()
    assert stale == [], "stale examples (run `make docs`):\n" + "\n".join(f"{s.page.name}: {s.name}\n{s.diff}"
                                                                           for s in stale)


def test_every_example_is_shown_somewhere_and_every_saved_run_is_used():
    shown = Pages.read().names()
    assert {example.name for example in EXAMPLES} - shown == set()
    saved = {path.stem for path in docs_examples.SAVED.glob("*.json")}
    assert saved == {example.name for example in EXAMPLES if example.kind == "run"
                     and docs_examples._run_source(example) is example}


def test_the_readme_is_short_and_every_link_resolves():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    assert "make demo" in readme and "make test" in readme
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to {target}, which is missing"


@pytest.mark.parametrize("text", ["<!-- example: allocs -->\n```text\n$ zprof x\nold\n```\n<!-- /example -->\n"])
def test_a_stale_block_is_found(text, tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(text)
    monkeypatch.setattr(docs_examples, "PAGES", (page,))
    monkeypatch.setattr(docs_examples, "printed", lambda example: "new\n")
    stale = docs_examples.check()
    assert [s.name for s in stale] == ["allocs"] and "+new" in stale[0].diff
    docs_examples.write()
    assert docs_examples.check() == []
    assert "new\n```" in page.read_text()
