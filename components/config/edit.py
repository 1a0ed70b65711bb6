"""Set values in params.yaml as text, so that every other line, comment and blank stays as the user sees it.

Only the lines of the keys being set change: a scalar keeps its end-of-line comment (at its column when the new
value fits), a list is written as a block list under its key, and a key whose value is a block mapping (e.g.
`tune.space`) has its indented children replaced. Values are written in the form `dvc exp run -S` writes (an
empty value for null, block lists), so a later experiment's diff stays its own edited lines. A key the file
lacks is refused by name: params.yaml ships every key, so a missing one is a typo."""
from __future__ import annotations

import json
import re
from typing import Any

import yaml

from components.config.loading import lookup

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


class EditError(ValueError):
    pass


def render(value: Any) -> str:
    """One YAML flow scalar or collection, as a human writes it: null, true, 0.0002, [16, 32], {a: 1}."""
    if isinstance(value, str) and value and not re.search(r"[:#{}\[\],&*?|<>=!%@`'\"]|^\s|\s$|^[-~]", value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("\n...")


def _split_comment(rest: str) -> tuple[str, str]:
    """(value text, comment incl. the spaces before '#') of what follows `key:` on a line."""
    in_quote = None
    for i, ch in enumerate(rest):
        if in_quote:
            in_quote = None if ch == in_quote else in_quote
        elif ch in "'\"":
            in_quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1] in " \t"):
            j = i
            while j > 0 and rest[j - 1] in " \t":
                j -= 1
            return rest[:j], rest[j:]
    return rest.rstrip(), ""


def _find(lines: list[str], dotted: str) -> int:
    """Index of the line that holds `dotted` (section.key…) as a block-style key."""
    parts = dotted.split(".")
    start, end, indent = 0, len(lines), 0
    for depth, part in enumerate(parts):
        found = None
        for i in range(start, end):
            m = _KEY.match(lines[i])
            if m and len(m["indent"]) == indent and m["key"] == part:
                found = i
                break
        if found is None:
            where = ".".join(parts[:depth]) or "the top level"
            raise EditError(f"params file has no key {dotted!r} (no {part!r} under {where})")
        if depth < len(parts) - 1:
            child = _child_indent(lines, found)
            if child is None:
                raise EditError(f"params file: {'.'.join(parts[:depth + 1])} is not a block mapping; cannot set "
                                f"{dotted!r} inside it")
            start, end, indent = found + 1, _block_end(lines, found), child
        else:
            return found
    raise AssertionError("unreachable")


def _child_indent(lines: list[str], i: int) -> int | None:
    own = len(_KEY.match(lines[i])["indent"])
    for line in lines[i + 1:]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        n = len(line) - len(line.lstrip(" "))
        return n if n > own else None
    return None


def _block_end(lines: list[str], i: int) -> int:
    """The index after the last line belonging to the key at line i (its indented children and their comments)."""
    own = len(_KEY.match(lines[i])["indent"])
    end = i + 1
    for j in range(i + 1, len(lines)):
        line = lines[j]
        if not line.strip():
            continue
        n = len(line) - len(line.lstrip(" "))
        if n <= own:
            break
        end = j + 1
    return end


def _list_end(lines: list[str], i: int) -> int:
    """The index after a block list written at the key's own indent (`key:` then `- item` lines)."""
    indent = _KEY.match(lines[i])["indent"]
    end = i + 1
    while end < len(lines) and lines[end].startswith(indent + "- "):
        end += 1
    return end


def set_values(text: str, values: dict[str, Any]) -> str:
    """`text` with each dotted key (section.key) set to its value, every other line as it was."""
    lines = text.splitlines()
    for dotted, value in values.items():
        i = _find(lines, dotted)
        m = _KEY.match(lines[i])
        old, comment = _split_comment(m["rest"])
        head = f"{m['indent']}{m['key']}:"
        if isinstance(value, dict) and value and not old.strip():  # a block mapping: replace its children
            child = _child_indent(lines, i) or len(m["indent"]) + 2
            first = i + 1  # the key's own comment may continue on comment-only lines: they stay
            while first < len(lines) and lines[first].lstrip().startswith("#"):
                first += 1
            lines[first:_block_end(lines, i)] = [f"{' ' * child}{k}: {render(v)}" for k, v in value.items()]
            continue
        new = head if value is None or isinstance(value, list) and value else f"{head} {render(value)}"
        if _child_indent(lines, i) is not None and not old.strip():  # was a block: its children go
            del lines[i + 1:_block_end(lines, i)]
        del lines[i + 1:_list_end(lines, i)]  # a block list's items sit at the key's own indent
        if isinstance(value, list) and value:
            lines[i + 1:i + 1] = [f"{m['indent']}- {render(v)}" for v in value]
        if comment:
            column = len(head) + len(old) + len(comment) - len(comment.lstrip(" \t"))
            new += " " * max(1, column - len(new)) + comment.lstrip(" \t")  # at its column when the value fits
        lines[i] = new
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def changed_values(text: str, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of `values` whose key the file sets otherwise (or lacks): only those lines need to change."""
    raw = yaml.safe_load(text) or {}
    return {k: v for k, v in values.items() if json.dumps(lookup(raw, k), sort_keys=True, default=str)
            != json.dumps(v, sort_keys=True, default=str)}
