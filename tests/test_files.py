"""Atomic writers: what lands at the target, what is left on failure, permissions."""

import os
import stat

import pytest

from vgrout.files import atomic_dir, atomic_write, atomic_write_text


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]
    assert mode(target) == 0o666 & ~umask()  # as open(path, "w") would make it


def test_atomic_write_that_fails_keeps_the_old_file(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "old")

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def fill_with(name: str, text: str):
    def fill(tmp):
        (tmp / name).write_text(text)

    return fill


def test_atomic_dir_builds_and_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "out" / "model"
    assert atomic_dir(target, fill_with("a.bin", "1")) == target
    atomic_dir(target, fill_with("b.bin", "2"))
    assert sorted(p.name for p in target.iterdir()) == ["b.bin"]  # nothing of the old one
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]
    assert mode(target) == 0o777 & ~umask()  # as mkdir would make it, not mkdtemp's 0700


def test_atomic_dir_that_fails_keeps_the_old_folder_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model"
    atomic_dir(target, fill_with("a.bin", "1"))

    def broken(tmp):
        (tmp / "half.bin").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_dir(target, broken)
    assert sorted(p.name for p in target.iterdir()) == ["a.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
