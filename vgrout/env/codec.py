"""Serialise return values in the untrusted process; compare them in the parent.

Wire format: a flat node table in post-order (children before parents, root
last), as JSON. Flat, because nested JSON of a 10^5-node linked list would
overflow the decoder's recursion in the parent; post-order, because the parent
can then check that every child index is smaller than its parent's (no cycles,
no loops) and compare bottom-up without recursion.

Nodes: ["n"] None, ["b", bool], ["i", int], ["f", float], ["s", str],
["l"|"t"|"S"|"F", [child...]] list/tuple/set/frozenset, ["d", [k, v, k, v...]],
["o", class name, [attr names], [child...]] a plain-Python object (its
``__dict__``), ["?", type name] anything else (never equal to anything).

Types are read with ``type(x)`` (captured before the solution runs), never
``isinstance`` or ``x.__class__``: an int subclass, or an object that lies
about its class, is not an int.

Size: ``encode`` refuses a value whose table would exceed ``max_bytes`` of
JSON text or ``max_nodes`` nodes, counting while it walks, so a 100 MB string
or a list of 10^7 items costs the program one length check, and the parent
never receives (or decodes) more than the budget. Depth needs no limit of its
own: the table is flat and every walk over it, here and in the parent, is an
explicit loop, so a 10^5-deep value costs what 10^5 nodes cost.
"""

from __future__ import annotations

import gc
import json
import math
from contextlib import contextmanager
from json.encoder import encode_basestring_ascii as _escape
from typing import cast

_type, _id, _len, _list, _sorted = type, id, len, list, sorted
_object_getattribute, _dict = object.__getattribute__, dict
_isclose, _isnan = math.isclose, math.isnan
_gc_disable, _gc_enable, _gc_isenabled = gc.disable, gc.enable, gc.isenabled


@contextmanager
def _no_gc():
    """Building 10^5 small lists would trigger full collections over every live
    object again and again (quadratic time); nothing here creates cycles."""
    was = _gc_isenabled()
    _gc_disable()
    try:
        yield
    finally:
        if was:
            _gc_enable()


MAX_NODES = 2_000_000
MAX_BYTES = 16 << 20
MAX_INT_BITS = 4000
MAX_TYPE_NAME = 100
REL_TOL, ABS_TOL = 1e-6, 1e-9

_SEQ_TAGS: dict[type, str] = {list: "l", tuple: "t", set: "S", frozenset: "F"}
# Upper bounds on the JSON text of the table, in bytes: a node's framing
# ('["x",' ... ']' and the comma after it), the longest float repr
# ("-2.2250738585072014e-308"), and the digits of an int per bit (log10 2 < 0.31).
_NODE_BYTES = 11
_FLOAT_BYTES = 24
_STR_CHUNK = 1 << 16


class EncodeError(Exception):
    """A value the wire format refuses (cyclic, too large, too big an int)."""


def _str_bytes(s: str, limit: int) -> int:
    """Length of `s` as json.dumps writes it (ASCII, escaped), or more than `limit`.

    Counted a chunk at a time and given up as soon as it passes `limit`: a
    100 MB string is refused after one length check, and a string of control
    characters (six bytes each once escaped) is never escaped whole.
    """
    if _len(s) + 2 > limit:
        return _len(s) + 2
    n = 2
    for i in range(0, _len(s), _STR_CHUNK):
        n += _len(_escape(s[i : i + _STR_CHUNK])) - 2
        if n > limit:
            break
    return n


def _int_bytes(x: int) -> int:
    """Upper bound on the decimal digits of `x`, with its sign."""
    return x.bit_length() * 31 // 100 + 2


def _type_name(t) -> str:
    """A type's qualified name, short: a metaclass may make it anything."""
    name = getattr(t, "__qualname__", "?")
    return name[:MAX_TYPE_NAME] if _type(name) is str else "?"


def _obj_fields(x, t) -> tuple | None:
    """(class name, attr names, values) for a plain Python object, else None."""
    if getattr(t, "__module__", None) in ("builtins", None):
        return None
    try:
        attrs = _object_getattribute(x, "__dict__")
    except Exception:  # noqa: BLE001 - a hostile __dict__ descriptor may raise anything
        return None
    name = _type.__getattribute__(t, "__name__")
    if _type(attrs) is not _dict or _type(name) is not str:
        return None
    names = _sorted(k for k in attrs if _type(k) is str)
    return name, names, [attrs[k] for k in names]


def encode(value, max_nodes: int = MAX_NODES, max_bytes: int = MAX_BYTES) -> list:
    """Node table for `value` (post-order). Raises EncodeError.

    `max_bytes` bounds the table's JSON text (``dumps``): the size is counted
    node by node while encoding, and a container's children are charged before
    they are copied, so a value too large is refused after work proportional
    to the budget, not to the value.
    """
    with _no_gc():
        return _encode(value, max_nodes, max_bytes)


def _leaf(x, t, room: int) -> tuple | None:
    """(node, its JSON bytes) for a scalar, else None. Raises EncodeError."""
    if x is None:
        return ["n"], _NODE_BYTES
    if t is bool:
        return ["b", x], _NODE_BYTES + 5
    if t is int:
        if x.bit_length() > MAX_INT_BITS:
            raise EncodeError("int too large")
        return ["i", x], _NODE_BYTES + _int_bytes(x)
    if t is float:
        return ["f", x], _NODE_BYTES + _FLOAT_BYTES
    if t is str:
        return ["s", x], _NODE_BYTES + _str_bytes(x, room)
    return None


def _encode(value, max_nodes: int, max_bytes: int) -> list:
    out: list = []
    done: list = []  # indices of finished nodes, consumed by parents
    work: list = [(0, value)]
    open_ids: set = set()
    child_bytes = _len(str(max_nodes)) + 1  # a child index and its comma
    size = 2  # the table's brackets
    while work:
        op, x = work.pop()
        if op == 1:  # build a container from its finished children
            head, n, oid = x
            children = done[_len(done) - n :] if n else []
            del done[_len(done) - n :]
            out.append(head + [children])
            open_ids.discard(oid)
        else:
            t = _type(x)
            leaf = _leaf(x, t, max_bytes - size)
            if leaf is not None:
                out.append(leaf[0])
                size += leaf[1]
            else:
                if _id(x) in open_ids:
                    raise EncodeError("cyclic value")
                fields = None if t in _SEQ_TAGS or t is dict else _obj_fields(x, t)
                if t in _SEQ_TAGS:
                    n, head, extra = _len(x), [_SEQ_TAGS[t]], 2
                elif t is dict:
                    n, head, extra = 2 * _len(x), ["d"], 2
                elif fields is not None:
                    n, head = _len(fields[2]), ["o", fields[0], fields[1]]
                    extra = 4 + sum(_str_bytes(s, max_bytes) + 1 for s in [fields[0], *fields[1]])
                else:
                    name = _type_name(t)
                    out.append(["?", name])
                    size += _NODE_BYTES + _str_bytes(name, max_bytes)
                    done.append(_len(out) - 1)
                    continue
                size += _NODE_BYTES + extra + n * child_bytes
                if size > max_bytes or n + _len(work) + _len(out) > max_nodes:
                    raise EncodeError("value too large")
                if t in _SEQ_TAGS:
                    items = _list(x)
                elif t is dict:
                    items = [y for kv in _list(x.items()) for y in kv]
                else:
                    items = cast(tuple, fields)[2]  # an object: _obj_fields gave them
                open_ids.add(_id(x))
                work.append((1, (head, _len(items), _id(x))))
                work.extend((0, y) for y in reversed(items))
                continue
        done.append(_len(out) - 1)
        if size > max_bytes or _len(out) > max_nodes:
            raise EncodeError("value too large")
    return out


def dumps(table: list) -> str:
    return json.dumps(table, separators=(",", ":"), allow_nan=True)


# ---------------------------------------------------------------- parent side

_LEAF = {"n": 1, "b": 2, "i": 2, "f": 2, "s": 2, "?": 2}
_LEAF_TYPES = {"b": (bool,), "i": (int,), "f": (float, int), "s": (str,), "?": (str,)}


class Table:
    """A validated node table with hash-consed ids (equal subtrees, equal ids)."""

    def __init__(self, nodes: list, interner: dict):
        self.nodes = nodes
        self.ids = [0] * len(nodes)
        self.has_float = False
        with _no_gc():
            for i, node in enumerate(nodes):
                self.ids[i] = interner.setdefault(self._key(i, node), len(interner))

    def _key(self, i: int, node) -> tuple:
        if not isinstance(node, list) or not node or not isinstance(node[0], str):
            raise ValueError(f"node {i}: malformed")
        tag = node[0]
        if tag in _LEAF:
            if len(node) != _LEAF[tag]:
                raise ValueError(f"node {i}: bad arity")
            if tag == "n":
                return ("n",)
            v = node[1]
            if type(v) not in _LEAF_TYPES[tag] or (tag == "i" and type(v) is bool):
                raise ValueError(f"node {i}: bad {tag} payload")
            if tag == "f":
                self.has_float = True
                v = float(v)
                return ("f", "nan") if _isnan(v) else ("f", v)
            return (tag, v)
        kids = node[-1]
        if not isinstance(kids, list) or not all(type(k) is int and 0 <= k < i for k in kids):
            raise ValueError(f"node {i}: children must be earlier nodes")
        kid_ids = [self.ids[k] for k in kids]
        if tag in ("l", "t") and len(node) == 2:
            return (tag, tuple(kid_ids))
        if tag in ("S", "F") and len(node) == 2:
            return (tag, tuple(sorted(kid_ids)))
        if tag == "d" and len(node) == 2 and len(kids) % 2 == 0:
            return ("d", frozenset(zip(kid_ids[0::2], kid_ids[1::2])))
        if (
            tag == "o"
            and len(node) == 4
            and type(node[1]) is str
            and isinstance(node[2], list)
            and len(node[2]) == len(kids)
            and all(type(a) is str for a in node[2])
        ):
            return ("o", node[1], tuple(zip(node[2], kid_ids)))
        raise ValueError(f"node {i}: unknown tag or shape {tag!r}")


def _float_match_bytes(e: float) -> int:
    """Most bytes an actual leaf that matches the expected float `e` can take:
    a float repr, or an int close to `e` (as long as `e` has digits)."""
    if _isnan(e) or e in (float("inf"), float("-inf")):
        return _FLOAT_BYTES
    return max(_FLOAT_BYTES, _len(str(int(abs(e)))) + 2)


def match_bytes(table: list, max_nodes: int = MAX_NODES) -> int:
    """Upper bound on the JSON text of any table that ``same`` accepts for the
    expected `table` (a valid one: encoded by ``encode``).

    Such a table has the same nodes (hash-consing, or the explicit walk, pairs
    them one to one) with the same leaves, but for floats: so the bound is the
    encoder's own size estimate with each float widened to what a matching
    float or int may take. The parent uses it to skip, unparsed, a reported
    value that could not match, whatever its size.
    """
    child_bytes = _len(str(max_nodes)) + 1
    size = 2
    for node in table:
        tag = node[0]
        size += _NODE_BYTES
        if tag == "b":
            size += 5
        elif tag == "i":
            size += _len(str(node[1]))
        elif tag == "f":
            size += _float_match_bytes(float(node[1]))
        elif tag in ("s", "?"):
            size += _len(_escape(node[1]))
        elif tag == "o":
            size += 4 + sum(_len(_escape(s)) + 1 for s in [node[1], *node[2]])
            size += _len(node[3]) * child_bytes
        elif tag != "n":
            size += 2 + _len(node[1]) * child_bytes
    return size


def _close(e: float, a) -> bool:
    """Float leaf comparison: int or float actual (never bool), with tolerance."""
    if type(a) not in (int, float):
        return False
    a = float(a)
    if _isnan(e) or _isnan(a):
        return _isnan(e) and _isnan(a)
    return _isclose(e, a, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def same(expected: Table, actual: Table) -> bool:
    """Type-exact structural equality; floats (expected side) within tolerance.

    Without floats in the expected value, two tables are equal exactly when
    their roots share a hash-consed id. With floats, walk both trees with an
    explicit stack (no recursion); set elements and dict keys compare exactly.
    """
    if not expected.nodes or not actual.nodes:
        return False
    if not expected.has_float:
        return expected.ids[-1] == actual.ids[-1]
    stack = [(len(expected.nodes) - 1, len(actual.nodes) - 1)]
    while stack:
        ei, ai = stack.pop()
        if expected.ids[ei] == actual.ids[ai]:
            continue
        en, an = expected.nodes[ei], actual.nodes[ai]
        tag = en[0]
        if tag == "f":
            if not (an[0] in ("f", "i") and _close(en[1], an[1])):
                return False
        elif tag in ("l", "t") and an[0] == tag and len(en[1]) == len(an[1]):
            stack.extend(zip(en[1], an[1]))
        elif tag == "o" and an[0] == "o" and en[1] == an[1] and en[2] == an[2]:
            stack.extend(zip(en[3], an[3]))
        elif tag == "d" and an[0] == "d" and len(en[1]) == len(an[1]):
            amap = {actual.ids[k]: v for k, v in zip(an[1][0::2], an[1][1::2])}
            for k, v in zip(en[1][0::2], en[1][1::2]):
                if expected.ids[k] not in amap:
                    return False
                stack.append((v, amap[expected.ids[k]]))
        else:
            return False
    return True


def loads_table(text: str, interner: dict) -> Table:
    """Decode one wire table. Raises ValueError on anything malformed."""
    with _no_gc():
        nodes = json.loads(text)
    if not isinstance(nodes, list) or not nodes:
        raise ValueError("table must be a non-empty list")
    return Table(nodes, interner)
