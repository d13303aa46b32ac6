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
"""

from __future__ import annotations

import gc
import json
import math
from contextlib import contextmanager

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
MAX_INT_BITS = 4000
REL_TOL, ABS_TOL = 1e-6, 1e-9

_SEQ_TAGS = {list: "l", tuple: "t", set: "S", frozenset: "F"}


class EncodeError(Exception):
    """A value the wire format refuses (cyclic, too large, too big an int)."""


def _obj_fields(x, t) -> tuple | None:
    """(class name, attr names, values) for a plain Python object, else None."""
    if getattr(t, "__module__", None) in ("builtins", None):
        return None
    try:
        attrs = _object_getattribute(x, "__dict__")
    except Exception:  # noqa: BLE001 - a hostile __dict__ descriptor may raise anything
        return None
    if _type(attrs) is not _dict:
        return None
    names = _sorted(k for k in attrs if _type(k) is str)
    return _type.__getattribute__(t, "__name__"), names, [attrs[k] for k in names]


def encode(value, max_nodes: int = MAX_NODES) -> list:
    """Node table for `value` (post-order). Raises EncodeError."""
    with _no_gc():
        return _encode(value, max_nodes)


def _encode(value, max_nodes: int) -> list:
    out: list = []
    done: list = []  # indices of finished nodes, consumed by parents
    work: list = [(0, value)]
    open_ids: set = set()
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
            if x is None:
                out.append(["n"])
            elif t is bool:
                out.append(["b", x])
            elif t is int:
                if x.bit_length() > MAX_INT_BITS:
                    raise EncodeError("int too large")
                out.append(["i", x])
            elif t is float:
                out.append(["f", x])
            elif t is str:
                out.append(["s", x])
            else:
                if _id(x) in open_ids:
                    raise EncodeError("cyclic value")
                if t in _SEQ_TAGS:
                    items = _list(x)
                    head = [_SEQ_TAGS[t]]
                elif t is dict:
                    items = [y for kv in _list(x.items()) for y in kv]
                    head = ["d"]
                else:
                    fields = _obj_fields(x, t)
                    if fields is None:
                        out.append(["?", str(getattr(t, "__qualname__", "?"))])
                        done.append(_len(out) - 1)
                        continue
                    head = ["o", fields[0], fields[1]]
                    items = fields[2]
                open_ids.add(_id(x))
                work.append((1, (head, _len(items), _id(x))))
                work.extend((0, y) for y in reversed(items))
                if _len(work) + _len(out) > max_nodes:
                    raise EncodeError("value too large")
                continue
        done.append(_len(out) - 1)
        if _len(out) > max_nodes:
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
