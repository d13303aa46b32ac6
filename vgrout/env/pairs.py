"""Hack/clean pair files: the authored Markdown form and a JSON pair-set form.

A pair is one prompt with two completions that differ only in the hack. The
directions, the adapter inits and retain-heal all read pairs through
`load_pairs`, so a silently dropped or mis-parsed pair would shift every
direction built from them; every malformed input therefore raises a
`ValueError` naming the file, the line (or item) and the field.

Markdown form (`data/pairs/hack_pairs.md`)::

    ## section
    ### pair_id
    Tags: a, b                      (optional)
    #### Prompt
    ````text
    ...
    ````
    #### Hack   (same fence)
    #### Clean  (same fence)

A fence is three or more backticks followed by ``text``; it closes on a line
of at least as many backticks and nothing else, so a completion that contains
its own ```python block is fenced with four. Lines outside pairs (a ``#``
title, prose under a ``##`` heading) are ignored; inside a pair only the Tags
line, the three blocks and blank lines are allowed.

JSON form: a list of objects, or ``{"pairs": [...]}``, each with ``id``,
``section``, ``prompt``, ``hack``, ``clean`` and optional ``tags`` (list of
str) and ``source``.

Selection spec: ``path[#[section][/prefix][@tag1,tag2]]``. The section (if
given) must exist; the prefix filters ids; a pair must carry *all* the listed
tags. A selection that matches nothing is an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from vgrout.files import atomic_write_text

BLOCKS = ("Prompt", "Hack", "Clean")
TEXT_FIELDS = ("prompt", "hack", "clean")
_FENCE_OPEN = re.compile(r"^(`{3,})text\s*$")
_TAGS = re.compile(r"^Tags:\s*(.*)$")


@dataclass(frozen=True)
class Pair:
    """One prompt (user-message text) with a hack and a clean completion."""

    id: str
    section: str
    prompt: str
    hack: str
    clean: str
    tags: tuple[str, ...] = field(default=())
    source: str = ""

    def __post_init__(self) -> None:
        # Callers building pairs in code may pass a list; keep the pair hashable.
        object.__setattr__(self, "tags", tuple(self.tags))


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def _read_fence(lines: list[str], i: int, where: str) -> tuple[str, int]:
    """Parse a text fence starting at line index i; return (body, index after the fence)."""
    m = _FENCE_OPEN.match(lines[i]) if i < len(lines) else None
    if not m:
        got = repr(lines[i]) if i < len(lines) else "end of file"
        raise ValueError(f"{where}:{i + 1}: expected a ```text fence, got {got}")
    ticks = len(m.group(1))
    close = re.compile(r"^`{%d,}\s*$" % ticks)
    for j in range(i + 1, len(lines)):
        if close.match(lines[j]):
            return "\n".join(lines[i + 1 : j]), j + 1
    raise ValueError(
        f"{where}:{i + 1}: fence opened here is never closed (needs a line of {ticks}+ backticks)"
    )


def _finish(pair: dict | None, where: str, out: list[Pair], seen: dict[str, int]) -> None:
    if pair is None:
        return
    for name in BLOCKS:
        if name not in pair["blocks"]:
            raise ValueError(
                f"{where}:{pair['line']}: pair {pair['id']!r}: missing #### {name} block"
            )
    if pair["id"] in seen:
        raise ValueError(
            f"{where}:{pair['line']}: duplicate pair id {pair['id']!r} "
            f"(first at line {seen[pair['id']]})"
        )
    seen[pair["id"]] = pair["line"]
    b = pair["blocks"]
    out.append(
        Pair(
            id=pair["id"],
            section=pair["section"],
            prompt=b["Prompt"],
            hack=b["Hack"],
            clean=b["Clean"],
            tags=pair["tags"],
            source=f"{where}:{pair['line']}",
        )
    )


def parse_markdown(text: str, where: str = "<string>") -> tuple[list[Pair], list[str]]:
    """All pairs in a Markdown pair file, and the section names in file order."""
    lines = text.splitlines()
    pairs: list[Pair] = []
    sections: list[str] = []
    seen: dict[str, int] = {}
    section: str | None = None
    pair: dict | None = None
    i = 0
    while i < len(lines):
        line, n = lines[i], i + 1
        if line.startswith("#### "):
            name = line[5:].strip()
            if pair is None:
                raise ValueError(f"{where}:{n}: #### {name} outside a ### pair")
            if name not in BLOCKS:
                raise ValueError(
                    f"{where}:{n}: pair {pair['id']!r}: unknown block {name!r} "
                    f"(expected one of {', '.join(BLOCKS)})"
                )
            if name in pair["blocks"]:
                raise ValueError(f"{where}:{n}: pair {pair['id']!r}: second #### {name} block")
            body, i = _read_fence(lines, i + 1, where)
            if not body.strip():
                raise ValueError(f"{where}:{n}: pair {pair['id']!r}: empty #### {name} block")
            pair["blocks"][name] = body
            continue
        if line.startswith("### "):
            _finish(pair, where, pairs, seen)
            if section is None:
                raise ValueError(f"{where}:{n}: pair {line[4:].strip()!r} before any ## section")
            pid = line[4:].strip()
            if not pid or " " in pid:
                raise ValueError(f"{where}:{n}: pair id must be one non-empty word, got {pid!r}")
            pair = {"id": pid, "section": section, "line": n, "tags": (), "blocks": {}}
        elif line.startswith("## "):
            _finish(pair, where, pairs, seen)
            pair = None
            section = line[3:].strip()
            if not section or section in sections:
                raise ValueError(f"{where}:{n}: section name {section!r} is empty or repeated")
            sections.append(section)
        elif pair is not None and line.strip():
            m = _TAGS.match(line)
            if not m or pair["blocks"] or pair["tags"]:
                raise ValueError(
                    f"{where}:{n}: pair {pair['id']!r}: unexpected line {line!r} "
                    f"(only one 'Tags: a, b' line before the blocks is allowed)"
                )
            tags = tuple(t.strip() for t in m.group(1).split(","))
            if not all(tags):
                raise ValueError(f"{where}:{n}: pair {pair['id']!r}: empty tag in {line!r}")
            pair["tags"] = tags
        i += 1
    _finish(pair, where, pairs, seen)
    return pairs, sections


# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------


def _pair_from_json(obj: object, k: int, where: str) -> Pair:
    at = f"{where}: item {k}"
    if not isinstance(obj, dict):
        raise ValueError(f"{at}: expected an object, got {type(obj).__name__}")
    unknown = set(obj) - {"id", "section", *TEXT_FIELDS, "tags", "source"}
    if unknown:
        raise ValueError(f"{at}: unknown field(s) {sorted(unknown)}")
    for name in ("id", "section", *TEXT_FIELDS):
        if name not in obj:
            raise ValueError(f"{at}: missing field {name!r}")
        if not isinstance(obj[name], str) or not obj[name].strip():
            raise ValueError(f"{at}: field {name!r} must be a non-empty string")
    tags = obj.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ValueError(f"{at}: field 'tags' must be a list of non-empty strings")
    source = obj.get("source", f"{where}#{k}")
    if not isinstance(source, str):
        raise ValueError(f"{at}: field 'source' must be a string")
    return Pair(
        id=obj["id"],
        section=obj["section"],
        prompt=obj["prompt"],
        hack=obj["hack"],
        clean=obj["clean"],
        tags=tuple(tags),
        source=source,
    )


def parse_json(text: str, where: str = "<string>") -> tuple[list[Pair], list[str]]:
    """All pairs in a JSON pair set, and the section names in first-seen order."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}:{e.lineno}: invalid JSON: {e.msg}") from None
    if isinstance(data, dict):
        if "pairs" not in data:
            raise ValueError(f"{where}: a JSON object pair set needs a 'pairs' field")
        data = data["pairs"]
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a list of pairs, got {type(data).__name__}")
    pairs = [_pair_from_json(obj, k, where) for k, obj in enumerate(data)]
    seen: dict[str, int] = {}
    for k, p in enumerate(pairs):
        if p.id in seen:
            raise ValueError(
                f"{where}: item {k}: duplicate pair id {p.id!r} (first at item {seen[p.id]})"
            )
        seen[p.id] = k
    return pairs, list(dict.fromkeys(p.section for p in pairs))


def save_pairs_json(pairs: Iterable[Pair], path: str | Path) -> Path:
    """Write a JSON pair set atomically (temp file, then rename); returns the path."""
    path = Path(path)
    rows = []
    for p in pairs:
        row = asdict(p)
        row["tags"] = list(p.tags)
        rows.append(row)
    parse_json(json.dumps(rows), str(path))  # refuse to write what load_pairs would reject
    return atomic_write_text(path, json.dumps({"pairs": rows}, indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, str | None, str, tuple[str, ...]]:
    """``path#section/prefix@t1,t2`` -> (path, section or None, prefix, tags)."""
    path, _, selector = spec.partition("#")
    if not path:
        raise ValueError(f"pair spec {spec!r}: no file path")
    selector, _, tag_text = selector.partition("@")
    section, _, prefix = selector.partition("/")
    tags = tuple(t.strip() for t in tag_text.split(",")) if tag_text else ()
    if any(not t for t in tags):
        raise ValueError(f"pair spec {spec!r}: empty tag")
    return path, (section or None), prefix, tags


def select(
    pairs: Sequence[Pair],
    sections: Sequence[str],
    section: str | None,
    prefix: str,
    tags: Sequence[str],
    where: str,
) -> list[Pair]:
    if section is not None and section not in sections:
        raise ValueError(
            f"{where}: unknown section {section!r}; known sections: "
            f"{', '.join(sections) or '(none)'}"
        )
    chosen = [
        p
        for p in pairs
        if (section is None or p.section == section)
        and p.id.startswith(prefix)
        and all(t in p.tags for t in tags)
    ]
    if not chosen:
        raise ValueError(
            f"{where}: selection section={section!r} prefix={prefix!r} "
            f"tags={list(tags)} matched no pairs (of {len(pairs)})"
        )
    return chosen


def load_pairs(spec: str | Path) -> list[Pair]:
    """Pairs selected by ``path[#section][/prefix][@tag1,tag2]``, in file order.

    The path is relative to the working directory or absolute; ``.json``
    files are read as JSON pair sets, anything else as Markdown.
    """
    path, section, prefix, tags = parse_spec(str(spec))
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"pair file {file} does not exist (spec {str(spec)!r})")
    text = file.read_text(encoding="utf-8")
    parse = parse_json if file.suffix == ".json" else parse_markdown
    pairs, sections = parse(text, str(file))
    return select(pairs, sections, section, prefix, tags, str(file))
