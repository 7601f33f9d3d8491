"""Run folders: atomic files, no accidental overwrite, resume only on the same inputs,
one writer at a time, outputs apart from inputs, the code version recorded."""

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coolcore.errors import UsageError
from coolcore.runs.atomic import (
    atomic_torch_save,
    atomic_write_text,
    files_checksum,
    json_sha256,
)
from coolcore.runs.folder import RunFolder
from coolcore.runs.lifecycle import check_resume, finish_run_dir, open_run_dir, prepare_run_dir
from coolcore.runs.lock import RunLock
from coolcore.runs.outputs import check_output_apart, check_replaceable
from coolcore.runs.record import code_version, config_changes


def _tree(path: Path) -> dict:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _run_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"kind": "cv"}))
    return path


def test_new_run_is_built_in_partial(tmp_path):
    final, partial, done = prepare_run_dir(tmp_path / "sub" / "run", resume=False, force=False)
    assert not done and not partial.exists() and not final.exists()
    open_run_dir(final, partial, force=False)
    assert partial.is_dir() and not final.exists()
    assert partial.name == "run.partial"
    finish_run_dir(partial, final)
    assert final.is_dir() and not partial.exists()


def test_existing_run_needs_force_or_resume(tmp_path):
    run = _run_folder(tmp_path / "run")
    (run / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="already exists; pass --force"):
        prepare_run_dir(run, resume=False, force=False)
    assert (run / "keep.txt").read_text() == "x"
    _, _, done = prepare_run_dir(run, resume=True, force=False)
    assert done
    final, partial, done = prepare_run_dir(run, resume=False, force=True)
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


def test_force_refuses_a_data_folder_and_a_fifo(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "catalog.csv").write_text("image_id,file\na,images/a.fits\n")
    (data / "images" / "a.fits").write_bytes(b"SIMPLE")
    before = _tree(data)
    with pytest.raises(UsageError, match="not a run folder .*--force replaces only"):
        prepare_run_dir(data, resume=False, force=True)
    with pytest.raises(UsageError, match="not a run folder"):
        prepare_run_dir(data, resume=False, force=False)
    assert _tree(data) == before
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="pipe: is a FIFO; --force replaces only"):
        prepare_run_dir(fifo, resume=False, force=True)
    with pytest.raises(UsageError, match="is a FIFO"):
        check_replaceable(fifo, markers=["model.json"], what="model folder")
    assert fifo.is_fifo()
    # what --force may replace: a regular file, an empty folder, a folder with its marker
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "file", tmp_path / "empty", _run_folder(tmp_path / "old")):
        check_replaceable(path, markers=["run.json"], what="run folder")


def test_output_apart_from_inputs(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for out, how in (
        (data, "is"),
        (data / "run", "lies inside"),
        (data / "images" / "x" / "run", "lies inside"),
        (tmp_path, "contains"),
    ):
        with pytest.raises(UsageError, match=f"the output {how} the input"):
            check_output_apart(out, [data])
    link = tmp_path / "link"
    link.symlink_to(data)
    with pytest.raises(UsageError, match="lies inside"):
        check_output_apart(link / "run", [data])
    check_output_apart(tmp_path / "data2", [data, None])  # a sibling with a common prefix
    check_output_apart(tmp_path / "runs" / "cv", [data, tmp_path / "catalog.csv"])


def test_lock_of_a_live_process_is_refused(tmp_path):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (partial / ".lock").write_text(
            json.dumps({"pid": sleeper.pid, "host": socket.gethostname()})
        )
        message = f"another coolcore process \\(pid {sleeper.pid} on "
        with pytest.raises(UsageError, match=message):
            prepare_run_dir(tmp_path / "run", resume=True, force=False)
        with pytest.raises(UsageError, match=message):  # --force would delete its work
            prepare_run_dir(tmp_path / "run", resume=False, force=True)
        with pytest.raises(UsageError, match=message):
            RunLock(partial).acquire()
        assert prepare_run_dir(tmp_path / "run", resume=True, force=False, check_lock=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert partial.is_dir()


def test_stale_lock_is_taken_over_with_a_notice(tmp_path, capsys):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now
    (partial / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    prepare_run_dir(tmp_path / "run", resume=True, force=False)  # not refused
    with RunLock(partial) as lock:
        assert lock.owner() == {"pid": os.getpid(), "host": socket.gethostname()}
        assert f"taking over the stale lock of process {dead.pid}" in capsys.readouterr().err
    assert not (partial / ".lock").exists()


def _record(**changes) -> dict:
    record = {
        "catalog_checksum": "a" * 64,
        "data_checksum": "b" * 64,
        "config": {"train": {"epochs": 2, "lr": 0.001}, "preprocess": {"crop": 64}},
    }
    record.update(changes)
    return record


def test_resume_refused_naming_what_changed(tmp_path):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "run.json").write_text(json.dumps(_record()))
    check_resume(partial, _record())  # the same inputs: resumed
    cases = {
        "another catalogue": _record(catalog_checksum="c" * 64, data_checksum="d" * 64),
        "other maps": _record(data_checksum="d" * 64),
        r"another config \(keys train.epochs, train.lr\)": _record(
            config={"train": {"epochs": 3, "lr": 0.01}, "preprocess": {"crop": 64}}
        ),
    }
    for what, record in cases.items():
        with pytest.raises(
            UsageError, match=f"run.partial: this unfinished run was started with {what};"
        ):
            check_resume(partial, record)
    assert config_changes({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == ["a.c"]


def test_unfinished_run_is_refused_with_the_command_to_finish_it(tmp_path):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    command = "coolcore cv data --epochs 3 --fold 1 --out run"
    record = {"kind": "cv", "command": command, "config": {"cv": {"folds": 3}}}
    (partial / "run.json").write_text(json.dumps(record))
    (partial / "fold_01").mkdir()
    (partial / "fold_01" / "predictions.csv").write_text("image_id\n")
    folder = RunFolder(partial)
    expected = (
        "1 of 3 folds done\\); finish it with `coolcore cv data --epochs 3 --out run --resume`"
    )
    with pytest.raises(UsageError, match=f"an unfinished run \\({expected}"):
        folder.finished_cv_record()
    assert folder.finished_cv_record(fold=1) == record  # one chosen finished fold
    with pytest.raises(UsageError, match="1 of 3 folds done"):
        folder.finished_cv_record(fold=0)
    final = tmp_path / "run"
    partial.rename(final)
    with pytest.raises(UsageError, match="a run missing folds \\(1 of 3 folds done\\)"):
        RunFolder(final).finished_cv_record()


def test_code_version_in_and_outside_a_checkout(tmp_path):
    outside = tmp_path / "pkg" / "__init__.py"
    outside.parent.mkdir()
    outside.write_text("")
    assert code_version(outside) == {"git_commit": None, "git_dirty": None}
    import coolcore

    root = Path(coolcore.__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    here = code_version()
    assert here["git_commit"] == head.stdout.strip() and len(here["git_commit"]) == 40
    assert isinstance(here["git_dirty"], bool)


def test_atomic_write_leaves_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


class _Unsaveable:
    def __reduce__(self):
        raise RuntimeError("this object cannot be saved")


def test_torch_save_through_a_temporary_name(tmp_path):
    import torch

    path = tmp_path / "sub" / "last.ckpt"
    state = {"w": torch.arange(6.0).view(2, 3), "epoch": 3}
    atomic_torch_save(state, path)
    back = torch.load(path, weights_only=True)
    assert back["epoch"] == 3 and torch.equal(back["w"], state["w"])
    before = path.read_bytes()
    # a save that fails half-way (after the tensor is written) leaves the old
    # file as it was and no temporary file behind
    with pytest.raises(RuntimeError, match="cannot be saved"):
        atomic_torch_save({"w": torch.zeros(1000), "f": _Unsaveable()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_checksum_matches_hashlib(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"abc")
    b.write_bytes(b"\x00\x01")
    expected = hashlib.sha256(b"a.bin\0abc" + b"b.bin\0\x00\x01").hexdigest()
    assert files_checksum([a, b], base=tmp_path) == expected
    assert json_sha256({"b": 1, "a": [1.5]}) == hashlib.sha256(b'{"a":[1.5],"b":1}').hexdigest()


def test_resume_ignores_a_key_added_later_only_at_its_default():
    from coolcore.runs.record import resume_changes
    from coolcore.train.config import DEFAULTS, load_config

    new_cfg = load_config("demo")
    old_cfg = load_config("demo")
    del old_cfg["train"]["augment"]  # a run recorded before train.augment existed
    old, new = {"config": old_cfg}, {"config": new_cfg}
    assert resume_changes(old, new, DEFAULTS) == []
    assert resume_changes(old, new) == ["another config (keys train.augment)"]
    new_cfg["train"]["augment"] = "dihedral"  # changed from its default: refused
    assert resume_changes(old, new, DEFAULTS) == ["another config (keys train.augment)"]
