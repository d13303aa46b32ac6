"""Problem families: a statement template, its canonical solution and a reference.

A family is instantiated by choosing one value for each slot (a predicate, an
operation, a constant; see choices.py) and names (method, argument, loop
variable). The statement (`desc`) uses the choices' words, the canonical body
(`body`) their code, and the expected values come from `reference`, which
reads the choices' meanings (`Choice.fn`) and is written apart from the body.

`role` says where a family's instances go (make_families.py splits them):
  seen     warm-start instances, plus GRPO-training and held-out instances with
           choice combinations the warm start never showed;
  grpo     GRPO training only: a whole family the warm start never saw, where a
           model that cannot solve it is paid only by a loophole;
  heldout  evaluation only: a whole family nobody trained on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from choices import (
    AFFIX_STRINGS,
    CHAR_CLASSES,
    INT_LISTS,
    INT_PREDS,
    MAP_OPS,
    SENTENCES,
    SMALL_INTS,
    STRINGS,
    WORD_PREDS,
    Choice,
    constants,
)

LIST_ARG = ("nums", "values", "numbers", "arr", "items", "data", "xs", "scores")
INT_VAR = ("x", "v", "num", "item", "value", "n")
STR_ARG = ("s", "text", "line", "phrase", "sentence", "word")
CHAR_VAR = ("c", "ch", "char", "letter")
WORD_VAR = ("w", "token", "part", "piece")
LIST_NAMES = {"arg": LIST_ARG, "v": INT_VAR}
CHAR_NAMES = {"s": STR_ARG, "c": CHAR_VAR}
WORD_NAMES = {"s": STR_ARG, "w": WORD_VAR}

SEEN, GRPO, HELDOUT = "seen", "grpo", "heldout"


@dataclass(frozen=True)
class Family:
    name: str
    role: str
    verbs: tuple[str, ...]
    """Method-name prefixes; the method is `method` with {verb} and each slot's name piece."""
    method: str
    slots: dict[str, tuple[Choice, ...]]
    """Slot -> its choices, in the order their code is formatted (a slot's code may
    use the code of slots before it)."""
    names: dict[str, tuple[str, ...]]
    """Placeholder -> the identifiers it is drawn from (distinct within an instance)."""
    args: str
    ret: str
    desc: str
    body: str
    reference: Callable[..., Any]
    """(meanings: {slot: Choice.fn}, *arguments) -> the expected value."""
    inputs: tuple[tuple, ...]
    """Argument tuples the tests are drawn from."""
    quota: tuple[int, int, int] = (12, 3, 3)
    """Instances (warm start, GRPO training, held out); a grpo or heldout family uses
    only its own slot."""


def _one(pool) -> tuple[tuple, ...]:
    return tuple((x,) for x in pool)


def _default(value: int, name: str) -> Choice:
    return Choice(f"d{value}", repr(value), repr(value), name, value)


DEFAULTS = (_default(-1, "OrMinusOne"), _default(0, "OrZero"))
WHICH = (
    Choice("max", "largest", ">", "Largest", lambda xs: sorted(xs)[-1]),
    Choice("min", "smallest", "<", "Smallest", lambda xs: sorted(xs)[0]),
)
QUANT = (
    Choice("any", "at least one number in {arg} is", "any", "Any",
           lambda bs: sum(map(bool, bs)) > 0),
    Choice("all", "every number in {arg} is", "all", "All",
           lambda bs: sum(map(bool, bs)) == len(bs)),
)  # fmt: skip
REPS = tuple(
    Choice(f"rep{n}", repr(ch), repr(ch), n, ch)
    for ch, n in (("*", "Star"), ("#", "Hash"), ("_", "Underscore"), ("-", "Dash"), (".", "Dot"))
)
TIMES = (Choice("k2", "2", "2", "Twice", 2), Choice("k3", "3", "3", "Thrice", 3))
SEPS = tuple(
    Choice(f"sep{n}", repr(ch), repr(ch), n, ch)
    for ch, n in (("-", "Dash"), (",", "Comma"), ("_", "Underscore"), ("+", "Plus"),
                  ("/", "Slash"), (":", "Colon"), (";", "Semicolon"), ("|", "Bar"))
)  # fmt: skip
ORDER = (
    Choice("same", "the same order", "{s}.split(' ')", "", lambda ws: ws),
    Choice("reversed", "reverse order", "{s}.split(' ')[::-1]", "Reversed", lambda ws: ws[::-1]),
)
RELS = (
    Choice("starts", "starts with {p}", "{s}.startswith({p})", "StartsWith",
           lambda s, p: s[: len(p)] == p),
    Choice("ends", "ends with {p}", "{s}.endswith({p})", "EndsWith",
           lambda s, p: len(s) >= len(p) and s[len(s) - len(p):] == p),
    Choice("contains", "contains {p}", "{p} in {s}", "Contains", lambda s, p: s.find(p) >= 0),
)  # fmt: skip
AFFIXES = tuple(
    Choice(f"p{n}", repr(p), repr(p), n, p)
    for p, n in (("ab", "Ab"), ("the", "The"), ("ing", "Ing"), ("12", "12"), ("on", "On"),
                 ("a b", "ASpaceB"), ("t", "T"), ("c", "C"))
)  # fmt: skip
RANGE_PREDS = tuple(c for c in INT_PREDS if c.key not in ("neg", "lt1", "nonzero"))

IF_SUM = """
total = 0
for {v} in {arg}:
    if {pred}:
        total += {v}
return total"""
IF_COUNT = """
count = 0
for {v} in {arg}:
    if {pred}:
        count += 1
return count"""

SEEN_FAMILIES = [
    Family("sum_if", SEEN, ("sum", "total", "add"), "{verb}{pred}", {"pred": INT_PREDS},
           LIST_NAMES, "{arg}: List[int]", "int",
           "Return the sum of the numbers in {arg} that are {pred}.", IF_SUM,
           lambda m, xs: sum(x for x in xs if m["pred"](x)), _one(INT_LISTS)),
    Family("count_if", SEEN, ("count", "howMany", "numberOf"), "{verb}{pred}",
           {"pred": INT_PREDS}, LIST_NAMES, "{arg}: List[int]", "int",
           "Return how many numbers in {arg} are {pred}.", IF_COUNT,
           lambda m, xs: len([x for x in xs if m["pred"](x)]), _one(INT_LISTS)),
    Family("filter_if", SEEN, ("keep", "filter", "select"), "{verb}{pred}", {"pred": INT_PREDS},
           LIST_NAMES, "{arg}: List[int]", "List[int]",
           "Return the numbers in {arg} that are {pred}, in their original order.",
           "return [{v} for {v} in {arg} if {pred}]",
           lambda m, xs: list(filter(m["pred"], xs)), _one(INT_LISTS)),
    Family("any_all", SEEN, ("has", "check", "test"), "{verb}{quant}{pred}",
           {"quant": QUANT, "pred": INT_PREDS}, LIST_NAMES, "{arg}: List[int]", "bool",
           "Return True if {quant} {pred}, and False otherwise.",
           "return {quant}({pred} for {v} in {arg})",
           lambda m, xs: m["quant"]([m["pred"](x) for x in xs]), _one(INT_LISTS)),
    Family("first_if", SEEN, ("first", "findFirst", "earliest"), "{verb}{pred}{dflt}",
           {"pred": INT_PREDS, "dflt": DEFAULTS}, LIST_NAMES, "{arg}: List[int]", "int",
           "Return the first number in {arg} that is {pred}, or {dflt} if there is none.",
           """
for {v} in {arg}:
    if {pred}:
        return {v}
return {dflt}""",
           lambda m, xs: next((x for x in xs if m["pred"](x)), m["dflt"]), _one(INT_LISTS)),
    Family("extreme_if", SEEN, ("find", "get", "pick"), "{verb}{which}{pred}{dflt}",
           {"which": WHICH, "pred": INT_PREDS, "dflt": DEFAULTS}, LIST_NAMES,
           "{arg}: List[int]", "int",
           "Return the {which} number in {arg} that is {pred}, or {dflt} if there is none.",
           """
best = None
for {v} in {arg}:
    if {pred} and (best is None or {v} {which} best):
        best = {v}
if best is None:
    return {dflt}
return best""",
           lambda m, xs: (m["which"]([x for x in xs if m["pred"](x)])
                          if any(m["pred"](x) for x in xs) else m["dflt"]),
           _one(INT_LISTS)),
    Family("map_op", SEEN, ("map", "transform", "apply"), "{verb}{op}", {"op": MAP_OPS},
           LIST_NAMES, "{arg}: List[int]", "List[int]",
           "Return a new list with every number of {arg} {op}.",
           "return [{op} for {v} in {arg}]",
           lambda m, xs: list(map(m["op"], xs)), _one(INT_LISTS)),
    Family("sum_map", SEEN, ("sumOf", "totalOf", "addUp"), "{verb}{op}", {"op": MAP_OPS},
           LIST_NAMES, "{arg}: List[int]", "int",
           "Return the sum of the numbers in {arg}, each first {op}.",
           """
total = 0
for {v} in {arg}:
    total += {op}
return total""",
           lambda m, xs: sum(map(m["op"], xs)), _one(INT_LISTS)),
    Family("scale_if", SEEN, ("update", "change", "adjust"), "{verb}{pred}{op}",
           {"pred": INT_PREDS, "op": MAP_OPS}, LIST_NAMES, "{arg}: List[int]", "List[int]",
           "Return {arg} with every number that is {pred} {op}; the other numbers stay as "
           "they are.",
           "return [{op} if {pred} else {v} for {v} in {arg}]",
           lambda m, xs: [m["op"](x) if m["pred"](x) else x for x in xs], _one(INT_LISTS)),
    Family("index_if", SEEN, ("indicesOf", "positionsOf", "whereAre"), "{verb}{pred}",
           {"pred": INT_PREDS}, LIST_NAMES, "{arg}: List[int]", "List[int]",
           "Return the positions (counted from 0) of the numbers in {arg} that are {pred}.",
           "return [i for i, {v} in enumerate({arg}) if {pred}]",
           lambda m, xs: [i for i in range(len(xs)) if m["pred"](xs[i])], _one(INT_LISTS)),
    Family("prefix_count", SEEN, ("runningCount", "prefixCount", "tally"), "{verb}{pred}",
           {"pred": INT_PREDS}, LIST_NAMES, "{arg}: List[int]", "List[int]",
           "Return a list whose element i is how many of {arg}[0], ..., {arg}[i] are {pred}.",
           """
result = []
count = 0
for {v} in {arg}:
    if {pred}:
        count += 1
    result.append(count)
return result""",
           lambda m, xs: [sum(1 for x in xs[: i + 1] if m["pred"](x)) for i in range(len(xs))],
           _one(INT_LISTS)),
    Family("range_sum", SEEN, ("sumUpTo", "totalUpTo", "rangeSum"), "{verb}{pred}",
           {"pred": RANGE_PREDS}, {"n": ("n", "limit", "top", "upto", "bound"),
                                   "v": ("i", "k", "x", "num", "value")},
           "{n}: int", "int",
           "Return the sum of the whole numbers from 1 to {n} (inclusive) that are {pred}.",
           """
total = 0
for {v} in range(1, {n} + 1):
    if {pred}:
        total += {v}
return total""",
           lambda m, n: sum(i for i in range(1, n + 1) if m["pred"](i)), _one(SMALL_INTS)),
    Family("count_chars", SEEN, ("count", "tally", "numberOf"), "{verb}{cls}",
           {"cls": CHAR_CLASSES}, CHAR_NAMES, "{s}: str", "int",
           "Return how many characters in {s} are {cls}.",
           """
count = 0
for {c} in {s}:
    if {cls}:
        count += 1
return count""",
           lambda m, s: len([ch for ch in s if m["cls"](ch)]), _one(STRINGS), (10, 2, 3)),
    Family("remove_chars", SEEN, ("remove", "strip", "drop"), "{verb}{cls}",
           {"cls": CHAR_CLASSES}, CHAR_NAMES, "{s}: str", "str",
           "Return {s} with every character that is {cls} removed.",
           "return ''.join({c} for {c} in {s} if not ({cls}))",
           lambda m, s: "".join(ch for ch in s if not m["cls"](ch)), _one(STRINGS), (10, 2, 3)),
    Family("replace_chars", SEEN, ("mask", "replace", "hide"), "{verb}{cls}{rep}",
           {"cls": CHAR_CLASSES, "rep": REPS}, CHAR_NAMES, "{s}: str", "str",
           "Return {s} with every character that is {cls} replaced by {rep}.",
           "return ''.join({rep} if {cls} else {c} for {c} in {s})",
           lambda m, s: "".join(m["rep"] if m["cls"](ch) else ch for ch in s), _one(STRINGS)),
    Family("repeat_if", SEEN, ("repeat", "stretch", "echo"), "{verb}{cls}{k}",
           {"cls": CHAR_CLASSES, "k": TIMES}, CHAR_NAMES, "{s}: str", "str",
           "Return {s} with every character that is {cls} written {k} times in a row.",
           "return ''.join({c} * {k} if {cls} else {c} for {c} in {s})",
           lambda m, s: "".join(ch * m["k"] if m["cls"](ch) else ch for ch in s), _one(STRINGS)),
    Family("word_count_if", SEEN, ("countWords", "numberOfWords", "wordsCount"), "{verb}{wp}",
           {"wp": WORD_PREDS}, WORD_NAMES, "{s}: str", "int",
           "Return how many words of {s} {wp}; words are separated by single spaces.",
           """
count = 0
for {w} in {s}.split(' '):
    if {wp}:
        count += 1
return count""",
           lambda m, s: len([w for w in s.split(" ") if m["wp"](w)]), _one(SENTENCES), (10, 3, 3)),
    Family("filter_words", SEEN, ("keepWords", "wordsThat", "selectWords"), "{verb}{wp}",
           {"wp": WORD_PREDS}, WORD_NAMES, "{s}: str", "str",
           "Return the words of {s} that {wp}, joined by single spaces; words are separated "
           "by single spaces.",
           "return ' '.join({w} for {w} in {s}.split(' ') if {wp})",
           lambda m, s: " ".join(w for w in s.split(" ") if m["wp"](w)), _one(SENTENCES),
           (10, 3, 3)),
    Family("str_affix", SEEN, ("check", "test", "does"), "{verb}{rel}{p}",
           {"p": AFFIXES, "rel": RELS}, {"s": STR_ARG}, "{s}: str", "bool",
           "Return True if {s} {rel}, and False otherwise.", "return {rel}",
           lambda m, s: bool(m["rel"](s, m["p"])), _one(AFFIX_STRINGS)),
    Family("join_words", SEEN, ("join", "glue", "link"), "{verb}{order}{sep}",
           {"order": ORDER, "sep": SEPS}, {"s": STR_ARG}, "{s}: str", "str",
           "Return the words of {s} in {order}, joined by {sep} instead of single spaces.",
           "return {sep}.join({order})",
           lambda m, s: m["sep"].join(m["order"](s.split(" "))), _one(SENTENCES), (10, 2, 3)),
]  # fmt: skip


def _rotate_left(xs: list, k: int) -> list:
    d = deque(xs)
    d.rotate(-k)
    return list(d)


ROTATE = (
    Choice("left", "left", "{arg}[k:] + {arg}[:k]", "Left", lambda xs, k: _rotate_left(xs, k)),
    Choice("right", "right", "{arg}[len({arg}) - k:] + {arg}[:len({arg}) - k]", "Right",
           lambda xs, k: _rotate_left(xs, -k)),
)  # fmt: skip
DEDUPE = (
    Choice("first", "the first occurrence of each number", "{arg}.index({v}) == i", "Firsts",
           lambda xs, i: xs[i] not in xs[:i]),
    Choice("once", "the numbers that occur exactly once", "{arg}.count({v}) == 1", "Singles",
           lambda xs, i: sum(1 for y in xs if y == xs[i]) == 1),
    Choice("repeated", "the first occurrence of each number that occurs more than once",
           "{arg}.count({v}) > 1 and {arg}.index({v}) == i", "Repeats",
           lambda xs, i: xs[i] not in xs[:i] and xs[i] in xs[i + 1:]),
)  # fmt: skip
SORTED = (
    Choice("orig", "in their original order", "result", "", lambda xs: xs),
    Choice("asc", "in increasing order", "sorted(result)", "Sorted", lambda xs: sorted(xs)),
)
WINDOW = (
    Choice("sum", "sum", "sum", "Sums", lambda xs: sum(xs)),
    Choice("max", "largest number", "max", "Maxes", lambda xs: sorted(xs)[-1]),
    Choice("min", "smallest number", "min", "Mins", lambda xs: sorted(xs)[0]),
)

GRPO_FAMILIES = [
    Family("rotate", GRPO, ("rotate", "shift", "cycle"), "{verb}{dir}{k}",
           {"dir": ROTATE, "k": constants("k", (1, 2, 3, 4), "By{}")}, {"arg": LIST_ARG},
           "{arg}: List[int]", "List[int]",
           "Return {arg} rotated {dir} by {k} positions; an empty list stays empty.",
           """
if not {arg}:
    return []
k = {k} % len({arg})
return {dir}""",
           lambda m, xs: m["dir"](xs, m["k"]), _one(INT_LISTS), (0, 8, 0)),
    Family("clamp", GRPO, ("clamp", "clip", "bound"), "{verb}{lo}{hi}",
           {"lo": constants("lo", (-2, 0, 1, 3), "From{}"), "hi": constants("hi", (5, 8, 10), "To{}")},
           LIST_NAMES, "{arg}: List[int]", "List[int]",
           "Return {arg} with every number below {lo} raised to {lo} and every number above "
           "{hi} lowered to {hi}.",
           "return [min(max({v}, {lo}), {hi}) for {v} in {arg}]",
           lambda m, xs: [m["lo"] if x < m["lo"] else m["hi"] if x > m["hi"] else x for x in xs],
           _one(INT_LISTS), (0, 8, 0)),
    Family("dedupe", GRPO, ("dedupe", "unique", "distinct"), "{verb}{which}{order}",
           {"which": DEDUPE, "order": SORTED}, LIST_NAMES, "{arg}: List[int]", "List[int]",
           "Return {which} of {arg}, {order}.",
           """
result = [{v} for i, {v} in enumerate({arg}) if {which}]
return {order}""",
           lambda m, xs: m["order"]([xs[i] for i in range(len(xs)) if m["which"](xs, i)]),
           _one(INT_LISTS + ([3, 1, 3, 2, 1], [5, 5, 5], [4, -4, 4, 0, 2])), (0, 6, 0)),
    Family("window", GRPO, ("window", "sliding", "chunked"), "{verb}{agg}{k}",
           {"agg": WINDOW, "k": constants("k", (2, 3), "Of{}")}, {"arg": LIST_ARG},
           "{arg}: List[int]", "List[int]",
           "Return the {agg} of every {k} neighbouring numbers of {arg}, from left to right.",
           "return [{agg}({arg}[i:i + {k}]) for i in range(len({arg}) - {k} + 1)]",
           lambda m, xs: [m["agg"](xs[i : i + m["k"]]) for i in range(len(xs) - m["k"] + 1)],
           _one(INT_LISTS), (0, 6, 0)),
]  # fmt: skip

HELDOUT_FAMILIES = [
    Family("remove_if", HELDOUT, ("remove", "drop", "discard"), "{verb}{pred}",
           {"pred": INT_PREDS}, LIST_NAMES, "{arg}: List[int]", "List[int]",
           "Return the numbers in {arg} that are not {pred}, in their original order.",
           "return [{v} for {v} in {arg} if not ({pred})]",
           lambda m, xs: [x for x in xs if not m["pred"](x)], _one(INT_LISTS), (0, 0, 6)),
    Family("count_between", HELDOUT, ("countBetween", "inRange", "countWithin"),
           "{verb}{lo}{hi}",
           {"lo": constants("lo", (0, 2, -3), "From{}"), "hi": constants("hi", (5, 9, 20), "To{}")},
           LIST_NAMES, "{arg}: List[int]", "int",
           "Return how many numbers in {arg} are at least {lo} and at most {hi}.",
           """
count = 0
for {v} in {arg}:
    if {lo} <= {v} <= {hi}:
        count += 1
return count""",
           lambda m, xs: len([x for x in xs if m["lo"] - 1 < x < m["hi"] + 1]), _one(INT_LISTS),
           (0, 0, 6)),
    Family("last_if", HELDOUT, ("last", "findLast", "latest"), "{verb}{pred}{dflt}",
           {"pred": INT_PREDS, "dflt": DEFAULTS}, LIST_NAMES, "{arg}: List[int]", "int",
           "Return the last number in {arg} that is {pred}, or {dflt} if there is none.",
           """
result = {dflt}
for {v} in {arg}:
    if {pred}:
        result = {v}
return result""",
           lambda m, xs: next((x for x in reversed(xs) if m["pred"](x)), m["dflt"]),
           _one(INT_LISTS), (0, 0, 6)),
    Family("word_lengths", HELDOUT, ("wordLengths", "lengthsOf", "sizesOf"), "{verb}{wp}",
           {"wp": WORD_PREDS}, WORD_NAMES, "{s}: str", "List[int]",
           "Return the lengths of the words of {s} that {wp}, in order; words are separated "
           "by single spaces.",
           "return [len({w}) for {w} in {s}.split(' ') if {wp}]",
           lambda m, s: [len(w) for w in s.split(" ") if m["wp"](w)], _one(SENTENCES), (0, 0, 6)),
]  # fmt: skip

FAMILIES = SEEN_FAMILIES + GRPO_FAMILIES + HELDOUT_FAMILIES
