"""The slot values problem families are instantiated with, and the test inputs.

A `Choice` is one value of a slot (a predicate, an operation, a constant): the
words the statement uses for it, the code the canonical solution uses for it,
a piece of the method name, and its meaning as a Python value or function.
The meaning (`fn`) is written apart from the code on purpose: expected values
are computed from `fn` by each family's reference, never from the canonical
body, so a slip in either is caught when the generator runs the canonical
solution against the expected values (make_families.py).

Choices are shared between families (the same "divisible by 7" predicate is
summed, counted, filtered, ...), which is what lets a model that learned a
family's template and the predicate's code solve a combination it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Choice:
    key: str
    """Short id, unique within its pool ("div7"); a problem's key is its family
    and the keys of its choices."""
    text: str
    """Statement words ("divisible by 7"); may use the instance's names ({arg}, ...)."""
    code: str
    """Code for the canonical body ("{v} % 7 == 0"); may use the instance's names
    and the code of slots before it."""
    name: str
    """Method-name piece ("MultiplesOf7")."""
    fn: Any
    """The meaning: a function or a constant, for the family's reference."""


def _pool(choices: list[Choice]) -> tuple[Choice, ...]:
    keys = [c.key for c in choices]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"choice keys used twice in one pool: {dupes}")
    return tuple(choices)


def _int_preds() -> tuple[Choice, ...]:
    out = [
        Choice("even", "even", "{v} % 2 == 0", "Evens", lambda x: (x & 1) == 0),
        Choice("odd", "odd", "{v} % 2 == 1", "Odds", lambda x: (x & 1) == 1),
        Choice("pos", "positive", "{v} > 0", "Positives", lambda x: x >= 1),
        Choice("neg", "negative", "{v} < 0", "Negatives", lambda x: x <= -1),
        Choice("nonzero", "not zero", "{v} != 0", "Nonzero", lambda x: bool(x)),
    ]
    for k in (3, 4, 5, 6, 7, 8, 9, 10):
        out.append(Choice(f"div{k}", f"divisible by {k}", f"{{v}} % {k} == 0", f"MultiplesOf{k}",
                          lambda x, k=k: (x // k) * k == x))  # fmt: skip
    for k in (1, 2, 3, 4, 5, 6, 8, 10):
        out.append(Choice(f"gt{k}", f"greater than {k}", f"{{v}} > {k}", f"Above{k}",
                          lambda x, k=k: x - k >= 1))  # fmt: skip
    for k in (1, 2, 3, 4, 5, 6, 8, 10):
        out.append(Choice(f"lt{k}", f"less than {k}", f"{{v}} < {k}", f"Below{k}",
                          lambda x, k=k: k - x >= 1))  # fmt: skip
    return _pool(out)


INT_PREDS = _int_preds()
"""Predicates on an integer `{v}` (29): parity, sign, divisibility, thresholds."""


def _map_ops() -> tuple[Choice, ...]:
    out = [
        Choice("square", "squared", "{v} * {v}", "Squared", lambda x: x**2),
        Choice("cube", "cubed", "{v} * {v} * {v}", "Cubed", lambda x: x**3),
        Choice("abs", "replaced by its absolute value", "abs({v})", "Abs", lambda x: max(x, -x)),
        Choice("negate", "negated", "-{v}", "Negated", lambda x: 0 - x),
    ]
    for k in (2, 3, 4, 5, 10):
        out.append(Choice(f"mul{k}", f"multiplied by {k}", f"{{v}} * {k}", f"Times{k}",
                          lambda x, k=k: sum([x] * k)))  # fmt: skip
    for k in (1, 2, 3, 5, 10):
        out.append(Choice(f"add{k}", f"increased by {k}", f"{{v}} + {k}", f"Plus{k}",
                          lambda x, k=k: x - (-k)))  # fmt: skip
    for k in (1, 2, 3, 5):
        out.append(Choice(f"sub{k}", f"decreased by {k}", f"{{v}} - {k}", f"Minus{k}",
                          lambda x, k=k: x + (-k)))  # fmt: skip
    for k in (2, 3):
        out.append(Choice(f"fdiv{k}", f"divided by {k} and rounded down", f"{{v}} // {k}",
                          f"Over{k}", lambda x, k=k: int((x - (x % k)) / k)))  # fmt: skip
    for k in (2, 3, 5):
        out.append(Choice(f"mod{k}", f"replaced by its remainder when divided by {k}",
                          f"{{v}} % {k}", f"Mod{k}", lambda x, k=k: x - k * (x // k)))  # fmt: skip
    return _pool(out)


MAP_OPS = _map_ops()
"""Operations on an integer `{v}` (23)."""


def _char_classes() -> tuple[Choice, ...]:
    vowels = set("aeiouAEIOU")
    out = [
        Choice("vowel", "a vowel", "{c}.lower() in 'aeiou'", "Vowels", lambda ch: ch in vowels),
        Choice("consonant", "a consonant", "{c}.isalpha() and {c}.lower() not in 'aeiou'",
               "Consonants", lambda ch: ch.isascii() and ch.isalpha() and ch not in vowels),
        Choice("digit", "a digit", "{c}.isdigit()", "Digits", lambda ch: ch in "0123456789"),
        Choice("upper", "an upper-case letter", "{c}.isupper()", "Capitals",
               lambda ch: "A" <= ch <= "Z"),
        Choice("lower", "a lower-case letter", "{c}.islower()", "Lowercase",
               lambda ch: "a" <= ch <= "z"),
        Choice("space", "a space", "{c} == ' '", "Spaces", lambda ch: ch == chr(32)),
    ]  # fmt: skip
    for letter in "aeilnorst":
        out.append(Choice(f"letter_{letter}", f"the letter '{letter}'", f"{{c}} == '{letter}'",
                          letter.upper() + "s", lambda ch, x=letter: ord(ch) == ord(x)))  # fmt: skip
    return _pool(out)


CHAR_CLASSES = _char_classes()
"""Predicates on a character `{c}` (15)."""


def _word_preds() -> tuple[Choice, ...]:
    out = []
    for k in (2, 3, 4, 5, 6):
        out.append(Choice(f"longer{k}", f"are longer than {k} letters", f"len({{w}}) > {k}",
                          f"LongerThan{k}", lambda w, k=k: len(w) >= k + 1))  # fmt: skip
    for k in (1, 2, 3, 4, 5):
        out.append(Choice(f"len{k}", f"have exactly {k} letters", f"len({{w}}) == {k}",
                          f"OfLength{k}", lambda w, k=k: len(list(w)) == k))  # fmt: skip
    for letter in "abst":
        out.append(Choice(f"starts_{letter}", f"start with '{letter}'",
                          f"{{w}}.startswith('{letter}')", f"Starting{letter.upper()}",
                          lambda w, x=letter: w[:1] == x))  # fmt: skip
    for letter in "enst":
        out.append(Choice(f"ends_{letter}", f"end with '{letter}'",
                          f"{{w}}.endswith('{letter}')", f"Ending{letter.upper()}",
                          lambda w, x=letter: w[-1:] == x))  # fmt: skip
    return _pool(out)


WORD_PREDS = _word_preds()
"""Predicates on a word `{w}` (18), phrased to follow "words that" / "words of s"."""


def constants(prefix: str, values, name: str = "{}") -> tuple[Choice, ...]:
    """A slot of plain constants: text and code are the value's literal."""
    return _pool([Choice(f"{prefix}{v}", repr(v), repr(v), name.format(str(v).replace("-", "Minus")), v)
                  for v in values])  # fmt: skip


# --- test inputs -------------------------------------------------------------------
# Pools the generator draws each instance's tests from (4-6 per problem), chosen so
# that every sibling instance of a family (another predicate, operation or constant)
# disagrees with the instance on at least one test.

INT_LISTS: tuple[list[int], ...] = (
    [1, 2, 3, 4, 5, 6],
    [-3, 0, 7, 10, 12],
    [],
    [9, 14, 21, -6, 8],
    [5],
    [8, -2, -7, 15, 3, 20],
    [0, 0, 4],
    [-10, -5, 30, 45, 6],
    [2, 4, 6, 8],
    [11, 13, 17, -1],
    [100, 49, 36, 7, -8],
    [3, 6, 9, 12, 18, 27],
    [-4, -9, 1, 2, 16],
    [7, 7, 14, 5, 40],
    [10],
    [-1, -2, -3],
    [6, 5, 4, 3, 2, 1, 0],
    [25, 60, 81, -20, 2],
    [33, -12, 70, 5, 8, 1],
    [4, 9, 10, 11],
    [7, 8, 9],
    [1, 0, -5],
    [20, 30, 10],
)

STRINGS: tuple[str, ...] = (
    "Hello World",
    "abc123",
    "",
    "A1 b2 C3",
    "stress test",
    "rain or shine",
    "TEST case",
    "xyz",
    "a e i o u",
    "Letters and 42 digits",
    "NaN",
    "listen SILENT",
    "tr33 t0p",
    "Oats in a tin",
    "lol",
)

SENTENCES: tuple[str, ...] = (
    "the cat sat",
    "a bb ccc dddd",
    "hello",
    "try this one now",
    "bold moves start early",
    "is it on",
    "stars and stripes",
    "one two three four five",
    "x yy zzz",
    "nest rest test",
    "alpha beta gamma delta",
    "I am here",
    "sun sets in the west",
    "big beans taste best",
)

AFFIX_STRINGS: tuple[str, ...] = (
    "abacus",
    "the theory",
    "sing along",
    "ab12cd",
    "testing",
    "abc",
    "cat",
    "",
    "xx ab",
    "a b c",
    "112",
    "bring it on",
    "thing",
    "12ab",
    "on the go",
    "bathe",
    "tic",
    "cool",
    "what",
)

SMALL_INTS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20)
