"""Docs that match the code: the README's two set-up commands (one of them is CI's), every relative link
and #anchor of the README and docs, and every `genpipe` command line in them (its stage, options and
--set overrides are accepted by the CLI and the params schema). A stale line fails here, in seconds."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from components.config import load_params
from conftest import REPO
from pipelines import cli

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "reports").glob("*/README.md"))]


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh|console)?\n(.*?)^```", text, flags=re.S | re.M)


def _slugs(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces → hyphens, repeats numbered."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    seen: dict[str, int] = {}
    out = set()
    for title in re.findall(r"^#{1,6}\s+(.*?)\s*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_the_readme_has_the_two_set_up_commands_and_ci_runs_the_second():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Fresh machine: the two commands", 1)[1].split("\n## ", 1)[0]
    run, test = [b.strip() for b in _blocks(section)]
    assert run.startswith("python -m venv .venv") and run.endswith("pip install -e . && dvc repro")
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [test]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_exists(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    bad = []
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            bad.append(f"{link}: no such file")
        elif anchor and (target.suffix != ".md" or anchor not in _slugs(target.read_text())):
            bad.append(f"{link}: no heading with anchor #{anchor}")
    assert not bad, f"{page.relative_to(REPO)}: " + "; ".join(bad)


def _genpipe_lines() -> list[tuple[str, list[str]]]:
    """(page, argv after `genpipe`) of every genpipe command in a code block or an inline `code` span."""
    found = []
    for page in PAGES:
        text = page.read_text()
        lines = [line for block in _blocks(text) for line in block.replace("\\\n", " ").splitlines()]
        lines += re.findall(r"`(genpipe [^`]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
        for line in lines:
            line = line.split(" #")[0].strip().removeprefix("$ ")
            if not re.match(r"^([A-Z_][A-Z0-9_]*=\S*\s+)*genpipe\s", line) or re.match(r".*genpipe \S+:", line):
                continue  # not a command, or a quoted message ("genpipe train: invalid …")
            words = shlex.split(line)
            while words[0] != "genpipe":  # VAR=value before the command
                words = words[1:]
            if not any("<" in w or "…" in w or w.endswith("=N") for w in words):  # placeholders
                found.append((str(page.relative_to(REPO)), words[1:words.index("&&")] if "&&" in words else words[1:]))
    return found


@pytest.mark.parametrize("page, argv", _genpipe_lines(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_every_documented_genpipe_command_is_accepted(page, argv):
    if len(argv) == 1:  # a stage named in prose (`genpipe sample`), or `genpipe --help`
        assert argv[0] in (*cli.STAGES, "init", "--help"), f"{page}: no stage {argv[0]!r}"
        return
    args = cli._parser().parse_args(argv)  # an unknown stage or option exits here
    if args.stage == "init":  # writes params.yaml from data: parsing its options is the check
        return
    params_file = REPO / args.params
    load_params(params_file if params_file.is_file() else REPO / "params.yaml", args.overrides)  # an example file


def test_the_documented_commands_were_found():
    lines = _genpipe_lines()
    assert len(lines) >= 20 and {argv[0] for _, argv in lines} >= {"train", "evaluate", "sample", "tune"}
