"""Run folders: atomic files, no accidental overwrite, resume."""

import hashlib

import pytest

from coolcore.errors import UsageError
from coolcore.runs.folder import (
    atomic_write_text,
    files_checksum,
    finish_run_dir,
    open_run_dir,
    prepare_run_dir,
)


def test_new_run_is_built_in_partial(tmp_path):
    final, partial, done = prepare_run_dir(tmp_path / "sub" / "run", resume=False, force=False)
    assert not done and not partial.exists() and not final.exists()
    open_run_dir(final, partial, force=False)
    assert partial.is_dir() and not final.exists()
    assert partial.name == "run.partial"
    finish_run_dir(partial, final)
    assert final.is_dir() and not partial.exists()


def test_existing_run_needs_force_or_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="already exists; pass --force"):
        prepare_run_dir(tmp_path / "run", resume=False, force=False)
    assert (tmp_path / "run" / "keep.txt").read_text() == "x"
    _, _, done = prepare_run_dir(tmp_path / "run", resume=True, force=False)
    assert done
    final, partial, done = prepare_run_dir(tmp_path / "run", resume=False, force=True)
    assert not done and final.exists()  # nothing is deleted before the inputs are checked
    open_run_dir(final, partial, force=True)
    assert not final.exists() and partial.is_dir()


def test_unfinished_run_needs_resume(tmp_path):
    (tmp_path / "run.partial").mkdir()
    (tmp_path / "run.partial" / "fold_00").mkdir()
    with pytest.raises(UsageError, match="pass --resume"):
        prepare_run_dir(tmp_path / "run", resume=False, force=False)
    final, partial, done = prepare_run_dir(tmp_path / "run", resume=True, force=False)
    open_run_dir(final, partial, force=False)
    assert not done and (partial / "fold_00").is_dir()
    with pytest.raises(UsageError, match="contradict"):
        prepare_run_dir(tmp_path / "run", resume=True, force=True)


def test_atomic_write_leaves_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_checksum_matches_hashlib(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"abc")
    b.write_bytes(b"\x00\x01")
    expected = hashlib.sha256(b"a.bin\0abc" + b"b.bin\0\x00\x01").hexdigest()
    assert files_checksum([a, b], base=tmp_path) == expected
