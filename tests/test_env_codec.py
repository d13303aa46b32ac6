"""Wire format and type-exact comparison (parent side, no sandbox)."""

import pytest

from vgrout.env.codec import EncodeError, Table, encode, loads_table, same


def eq(expected, actual) -> bool:
    interner = {}
    return same(Table(encode(expected), interner), Table(encode(actual), interner))


class MyInt(int):
    pass


class Node:
    def __init__(self, val, nxt=None):
        self.val, self.next = val, nxt


def test_equal_plain_values_compare_equal():
    for v in (
        0,
        -5,
        2**80,
        "abc",
        None,
        True,
        [1, [2, (3, "x")]],
        {"a": [1], 2: {3: None}},
        {1, 2, 3},
        frozenset({"a"}),
        (),
        [],
    ):
        assert eq(v, v)


def test_bool_is_not_int_and_int_subclass_is_not_int():
    assert not eq(1, True) and not eq(True, 1) and not eq(0, False)
    assert not eq(5, MyInt(5))
    assert not eq([1, 2], [1, MyInt(2)])


def test_container_types_are_exact():
    assert not eq([1, 2], (1, 2))
    assert not eq({1, 2}, [1, 2])
    assert not eq({1: 2}, [(1, 2)])
    assert eq({1: "a", 2: "b"}, {2: "b", 1: "a"})
    assert eq({3, 1, 2}, {2, 1, 3})


def test_float_tolerance_only_when_expected_is_float():
    assert eq(0.1 + 0.2, 0.3)
    assert eq(2.0, 2)
    assert not eq(2, 2.0)
    assert not eq(1.0, True)
    assert eq(float("inf"), float("inf")) and not eq(float("inf"), -float("inf"))
    assert eq(float("nan"), float("nan"))
    assert eq([1.5, {"k": 2.0}], [1.5000000001, {"k": 2.0}])
    assert not eq([1.5], [1.6])


def test_objects_compare_by_class_name_and_attributes():
    assert eq(Node(1, Node(2)), Node(1, Node(2)))
    assert not eq(Node(1, Node(2)), Node(1, Node(3)))

    class Liar:
        __class__ = int

        def __eq__(self, other):
            return True

    assert not eq(3, Liar())


def test_deep_linked_list_encodes_without_recursion():
    head = None
    for i in range(30_000):
        head = Node(i, head)
    table = encode(head)
    assert len(table) > 30_000
    assert eq(head, head)


def test_cycles_and_huge_values_are_refused():
    a = []
    a.append(a)
    with pytest.raises(EncodeError):
        encode(a)
    with pytest.raises(EncodeError):
        encode(10**5000)
    with pytest.raises(EncodeError):
        encode(list(range(100)), max_nodes=50)


def test_shared_subtrees_are_not_cycles():
    row = [0, 0]
    assert eq([[0, 0], [0, 0]], [row, row])


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '[["l",[0]]]',
        '[["i",1],["l",[1]]]',
        '[["i",true]]',
        '[["x"]]',
        '[["o","A",["a"],[]]]',
        '{"a":1}',
        '[["b",1]]',
    ],
)
def test_malformed_tables_raise_value_error(text):
    with pytest.raises(ValueError):
        loads_table(text, {})
