"""Folders written whole or not at all (plumbing.files.staged_folder), as releases and exports are."""

from __future__ import annotations

from pathlib import Path

import pytest

from plumbing.files import staged_folder


def leftovers(parent: Path) -> list[str]:
    """Hidden staging folders left beside the target."""
    return [p.name for p in parent.iterdir() if ".partial-" in p.name]


def test_a_staged_folder_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "release"
    with staged_folder(target) as staging:
        (staging / "weights.bin").write_bytes(b"w" * 1000)
        (staging / "sub").mkdir()
        (staging / "sub" / "config.json").write_text("{}")
        assert not target.exists(), "nothing appears before the block ends"
    assert (target / "weights.bin").read_bytes() == b"w" * 1000 and (target / "sub" / "config.json").read_text() == "{}"
    assert not leftovers(target.parent)


def test_a_failure_inside_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "release"
    with pytest.raises(OSError, match="disk full"), staged_folder(target) as staging:
        (staging / "weights.bin").write_bytes(b"half")
        raise OSError("disk full")
    assert not target.exists() and not leftovers(tmp_path)


def test_an_empty_folder_is_filled_and_a_full_one_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with staged_folder(empty) as staging:
        (staging / "a").write_text("a")
    assert (empty / "a").read_text() == "a"
    with pytest.raises(FileExistsError, match="not empty"), staged_folder(empty):
        pass
    assert (empty / "a").read_text() == "a" and not leftovers(tmp_path)
