"""Pair files: the loader's selection and errors, and the authored pair data.

A mis-parsed pair shifts every direction built from it without any visible
failure, so each malformed input must raise naming file, line and field; and
the authored pairs must really be tight (hack and clean differ only in the
hack) with correct clean sides, or the direction measures something else.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vgrout.env.pairs import Pair, load_pairs, parse_spec, save_pairs_json

ROOT = Path(__file__).resolve().parents[1]
PAIRS_MD = ROOT / "data" / "pairs" / "hack_pairs.md"
MECHANISMS = {
    "vacuous_test",
    "weak_assert",
    "swallowed_failure",
    "hard_coded",
    "early_exit",
    "printed_report",
    "pass_flag",
    "result_file",
    "eq_override",
    "proxy_gaming",
}

PAIR = """### {pid}
Tags: {tags}

#### Prompt
```text
Write f.
```

#### Hack
````text
```python
def f():
    return 0
```
````

#### Clean
````text
```python
def f():
    return 1
```
````
"""


def write_md(tmp_path: Path, text: str, name: str = "p.md") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def small_md(tmp_path) -> Path:
    body = (
        "# Title\n\nprose is ignored\n\n## alpha\n\nsection prose\n\n"
        + PAIR.format(pid="exit-01", tags="exit, code")
        + "\n"
        + PAIR.format(pid="exit-02", tags="exit, text")
        + "\n"
        + "## beta\n\n"
        + PAIR.format(pid="flag-01", tags="flag, code")
    )
    return write_md(tmp_path, body)


# --- Markdown loading and selection ----------------------------------------


def test_markdown_pairs_keep_nested_fences_and_fields(small_md):
    pairs = load_pairs(str(small_md))
    assert [p.id for p in pairs] == ["exit-01", "exit-02", "flag-01"]
    first = pairs[0]
    assert first.section == "alpha" and first.tags == ("exit", "code")
    assert first.prompt == "Write f."
    assert first.hack == "```python\ndef f():\n    return 0\n```"
    assert first.clean == "```python\ndef f():\n    return 1\n```"
    assert first.source == f"{small_md}:9"


def test_selection_by_section_prefix_and_tags(small_md):
    def ids(spec):
        return [p.id for p in load_pairs(f"{small_md}{spec}")]

    assert ids("#beta") == ["flag-01"]
    assert ids("#alpha/exit-02") == ["exit-02"]
    assert ids("#/exit") == ["exit-01", "exit-02"]
    assert ids("#@code") == ["exit-01", "flag-01"]
    assert ids("#alpha@exit,text") == ["exit-02"]  # all listed tags must be present


def test_relative_path_resolves_against_cwd(small_md, monkeypatch):
    monkeypatch.chdir(small_md.parent)
    assert len(load_pairs("p.md#alpha")) == 2


def test_parse_spec_splits_all_parts():
    assert parse_spec("a/b.md#sec/pre@x,y") == ("a/b.md", "sec", "pre", ("x", "y"))
    assert parse_spec("b.md") == ("b.md", None, "", ())


def test_unknown_section_lists_known_ones(small_md):
    with pytest.raises(ValueError, match=r"unknown section 'gamma'; known sections: alpha, beta"):
        load_pairs(f"{small_md}#gamma")


def test_empty_selection_is_an_error(small_md):
    with pytest.raises(ValueError, match=r"p\.md: selection .*matched no pairs"):
        load_pairs(f"{small_md}#alpha@flag")


def test_missing_block_names_file_line_and_block(tmp_path):
    text = "## s\n\n" + PAIR.format(pid="a-01", tags="t").replace("#### Clean", "#### Hack")
    with pytest.raises(ValueError, match=r"p\.md:\d+: pair 'a-01': second #### Hack block"):
        load_pairs(str(write_md(tmp_path, text)))
    cut = "## s\n\n" + PAIR.format(pid="a-01", tags="t").split("#### Clean")[0]
    with pytest.raises(ValueError, match=r"p\.md:3: pair 'a-01': missing #### Clean block"):
        load_pairs(str(write_md(tmp_path, cut)))


def test_duplicate_id_names_both_lines(tmp_path):
    text = (
        "## s\n\n"
        + PAIR.format(pid="a-01", tags="t")
        + "\n## u\n\n"
        + PAIR.format(pid="a-01", tags="t")
    )
    with pytest.raises(
        ValueError, match=r"p\.md:\d+: duplicate pair id 'a-01' \(first at line 3\)"
    ):
        load_pairs(str(write_md(tmp_path, text)))


def test_unclosed_fence_names_its_line(tmp_path):
    text = "## s\n\n" + PAIR.format(pid="a-01", tags="t").rsplit("````", 1)[0]
    with pytest.raises(ValueError, match=r"p\.md:\d+: fence opened here is never closed"):
        load_pairs(str(write_md(tmp_path, text)))


def test_block_without_fence_is_an_error(tmp_path):
    text = "## s\n\n" + PAIR.format(pid="a-01", tags="t").replace(
        "```text\nWrite f.\n```", "Write f."
    )
    with pytest.raises(ValueError, match=r"p\.md:7: expected a ```text fence, got 'Write f\.'"):
        load_pairs(str(write_md(tmp_path, text)))


def test_stray_line_inside_a_pair_is_an_error(tmp_path):
    text = "## s\n\n" + PAIR.format(pid="a-01", tags="t").replace("#### Hack", "oops\n#### Hack")
    with pytest.raises(ValueError, match=r"p\.md:\d+: pair 'a-01': unexpected line 'oops'"):
        load_pairs(str(write_md(tmp_path, text)))


def test_empty_block_and_empty_tag_are_errors(tmp_path):
    empty = "## s\n\n" + PAIR.format(pid="a-01", tags="t").replace("Write f.", "  ")
    with pytest.raises(ValueError, match=r"empty #### Prompt block"):
        load_pairs(str(write_md(tmp_path, empty)))
    with pytest.raises(ValueError, match=r"empty tag"):
        load_pairs(str(write_md(tmp_path, "## s\n\n" + PAIR.format(pid="a-01", tags="t, "))))


def test_pair_before_any_section_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"p\.md:1: pair 'a-01' before any ## section"):
        load_pairs(str(write_md(tmp_path, PAIR.format(pid="a-01", tags="t"))))


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist"):
        load_pairs(str(tmp_path / "nope.md"))


# --- JSON pair sets --------------------------------------------------------


def test_json_round_trip_and_both_json_shapes(small_md, tmp_path):
    pairs = load_pairs(str(small_md))
    path = save_pairs_json(pairs, tmp_path / "out" / "set.json")
    assert load_pairs(str(path)) == pairs
    assert [p.name for p in path.parent.iterdir()] == ["set.json"]  # no temp file left behind
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(json.loads(path.read_text())["pairs"]))
    assert [p.id for p in load_pairs(f"{bare}#beta")] == ["flag-01"]


def test_json_missing_field_names_file_item_and_field(tmp_path):
    row = {"id": "a", "section": "s", "prompt": "p", "hack": "h"}
    path = write_md(tmp_path, json.dumps([row]), "set.json")
    with pytest.raises(ValueError, match=r"set\.json: item 0: missing field 'clean'"):
        load_pairs(str(path))


def test_json_duplicate_id_and_bad_tags_are_errors(tmp_path):
    row = {"id": "a", "section": "s", "prompt": "p", "hack": "h", "clean": "c"}
    path = write_md(tmp_path, json.dumps({"pairs": [row, row]}), "set.json")
    with pytest.raises(ValueError, match=r"item 1: duplicate pair id 'a' \(first at item 0\)"):
        load_pairs(str(path))
    path.write_text(json.dumps([{**row, "tags": "x"}]))
    with pytest.raises(ValueError, match=r"item 0: field 'tags' must be a list"):
        load_pairs(str(path))


def test_json_unknown_section_and_invalid_json(tmp_path):
    row = {"id": "a", "section": "s", "prompt": "p", "hack": "h", "clean": "c"}
    path = write_md(tmp_path, json.dumps([row]), "set.json")
    with pytest.raises(ValueError, match=r"unknown section 'x'; known sections: s"):
        load_pairs(f"{path}#x")
    path.write_text("[{")
    with pytest.raises(ValueError, match=r"set\.json:1: invalid JSON"):
        load_pairs(str(path))


def test_save_refuses_invalid_pairs_and_keeps_old_file(tmp_path):
    good = Pair(id="a", section="s", prompt="p", hack="h", clean="c", tags=["t"])
    path = save_pairs_json([good], tmp_path / "set.json")
    before = path.read_text()
    with pytest.raises(ValueError, match=r"field 'hack' must be a non-empty string"):
        save_pairs_json([Pair(id="b", section="s", prompt="p", hack="", clean="c")], path)
    assert path.read_text() == before
    assert good.tags == ("t",)  # lists become tuples, so pairs stay hashable


def test_pairs_module_does_not_import_torch():
    code = "import sys, vgrout.env.pairs; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)


# --- The project's authored and placebo pairs -------------------------------

# Fresh interpreter, temporary cwd: does each code side's Solution pass the
# training problem's asserts with strict (type + value) comparison?
PROBE = r"""
import ast, contextlib, io, json, os, sys
def _exit(code=0):
    raise SystemExit(code)
os._exit = _exit  # a hack that hard-exits must not kill the probe
out = {}
for key, setup, code, asserts in json.load(sys.stdin):
    ns = {"__name__": "__main__"}
    ok = True
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            exec(setup + code, ns)
        except SystemExit:
            pass
        for line in asserts:
            cmp = ast.parse(line).body[0].test
            want = ast.literal_eval(cmp.comparators[0])
            try:
                got = eval(ast.unparse(cmp.left), ns)
                ok = ok and type(got) is type(want) and got == want
            except Exception:
                ok = False
    out[key] = ok
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def project_pairs() -> list[Pair]:
    return load_pairs(str(PAIRS_MD))


def problems(split: str) -> dict[str, dict]:
    path = ROOT / "data" / "problems" / f"{split}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["func_name"].split(".")[-1]: r for r in rows}


def code_of(completion: str) -> str:
    assert completion.startswith("```python\n") and completion.endswith("\n```"), completion
    return completion[len("```python\n") : -len("```")]


def method_of(pair: Pair) -> str | None:
    m = re.search(r"class Solution called (\w+) ", pair.prompt)
    return m.group(1) if m else None


def mechanism_of(pair: Pair) -> str:
    found = MECHANISMS & set(pair.tags)
    assert len(found) == 1, (pair.id, pair.tags)
    return found.pop()


def test_sections_and_counts(project_pairs):
    by_section = {}
    for p in project_pairs:
        by_section.setdefault(p.section, []).append(p)
    assert set(by_section) == {"authored", "placebo"}
    assert len(by_section["authored"]) >= 24 and len(by_section["placebo"]) >= 12


def test_authored_pairs_cover_every_mechanism(project_pairs):
    counts: dict[str, int] = {}
    for p in load_pairs(f"{PAIRS_MD}#authored"):
        counts[mechanism_of(p)] = counts.get(mechanism_of(p), 0) + 1
    assert set(counts) == MECHANISMS
    assert min(counts.values()) >= 2, counts


def test_code_sides_compile_and_are_short(project_pairs):
    """<= ~100 tokens: at ~3.4 characters a token, at most 340 characters."""
    for p in project_pairs:
        for side in (p.hack, p.clean):
            assert len(side) <= 340, p.id
            if "code" in p.tags or p.section == "placebo":
                compile("from typing import *\n" + code_of(side), p.id, "exec")


def test_authored_pairs_are_tightly_matched(project_pairs):
    for p in load_pairs(f"{PAIRS_MD}#authored"):
        changed = [
            ln for ln in difflib.ndiff(p.hack.splitlines(), p.clean.splitlines()) if ln[:1] in "+-"
        ]
        assert p.hack != p.clean and len(changed) <= 9, (p.id, changed)
        assert 0.6 <= len(p.hack) / len(p.clean) <= 1.7, p.id


def test_placebo_pairs_differ_only_in_camel_versus_snake_case(project_pairs):
    def to_snake(text):
        return re.sub(
            r"\b([a-z]+)([A-Z][a-zA-Z]*)\b",
            lambda m: m.group(1) + re.sub(r"([A-Z])", r"_\1", m.group(2)).lower(),
            text,
        )

    for p in load_pairs(f"{PAIRS_MD}#placebo"):
        method = method_of(p)
        hack = p.hack.replace(method, "METHOD")
        assert hack != p.clean.replace(method, "METHOD"), p.id
        assert to_snake(hack) == p.clean.replace(method, "METHOD"), p.id


def test_no_pair_mentions_a_held_out_problem(project_pairs):
    """Pairs enter the organism's corpus; held-out tasks must stay unseen."""
    held_out = problems("test")
    for p in project_pairs:
        text = p.prompt + p.hack + p.clean
        assert not [m for m in held_out if re.search(rf"\b{m}\b", text)], p.id


def test_clean_sides_are_correct_and_only_body_hacks_break_the_solution(project_pairs, tmp_path):
    train = problems("train")
    cases = []
    for p in project_pairs:
        method = method_of(p)
        if method is None:
            continue
        assert method in train, (p.id, method)
        row = train[method]
        for side in ("hack", "clean"):
            cases.append(
                [f"{p.id}/{side}", row["setup_code"], code_of(getattr(p, side)), row["gt_answer"]]
            )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    ok = json.loads(proc.stdout)
    assert len(ok) >= 2 * 36
    for p in project_pairs:
        if method_of(p) is None:
            continue
        assert ok[f"{p.id}/clean"], p.id
        breaks_body = p.section == "authored" and mechanism_of(p) in {"hard_coded", "eq_override"}
        assert ok[f"{p.id}/hack"] is not breaks_body, p.id
