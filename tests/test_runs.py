"""Run directories: state, the clobber rules, atomic writes."""

import json
import os
import stat

import pytest

from gsm8k_lab.config import SettingError
from gsm8k_lab.runs import (
    RunDir,
    RunStatus,
    atomic_write_text,
    check_file_name,
    check_writable_dir,
    jsonl_lines,
    read_jsonl,
)


def _finish(run: RunDir) -> None:
    run.model_dir.mkdir(parents=True)
    (run.model_dir / "adapter_config.json").write_text("{}")
    run.write({"status": RunStatus.COMPLETE.value})


def test_status_and_completeness(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.status() is None and not run.is_complete() and not run.has_partial()
    run.write({"status": "training"})
    assert run.status() is RunStatus.TRAINING and run.has_partial()
    run.write({"status": "complete"})
    assert not run.is_complete()  # no adapter yet
    _finish(RunDir(tmp_path / "done"))
    assert RunDir(tmp_path / "done").is_complete()
    run.run_file.write_text('{"status": "compl')  # torn
    assert run.status() is None


def test_check_refuses_to_clobber(tmp_path):
    done = RunDir(tmp_path / "done")
    _finish(done)
    with pytest.raises(SettingError, match="already holds a finished run; pass overwrite=True"):
        done.check(resume=False, overwrite=False)
    assert done.check(resume=False, overwrite=True) == {}
    partial = RunDir(tmp_path / "partial")
    partial.write({"status": "training", "run_id": "x"})
    with pytest.raises(SettingError, match="holds an unfinished run; pass resume=True"):
        partial.check(resume=False, overwrite=False)
    assert partial.check(resume=True, overwrite=False)["run_id"] == "x"


def test_a_run_dir_whose_parts_are_files(tmp_path):
    run = RunDir(tmp_path / "r")
    run.root.mkdir()
    run.run_file.write_text("{}")  # a run, by its marker, whose debug is a file
    run.debug_dir.write_text("not a folder")
    with pytest.raises(SettingError, match="is not a run directory: debug is a file"):
        run.check(resume=False, overwrite=True)


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_an_overwrite_sets_the_old_run_aside_and_puts_it_back(tmp_path):
    run = RunDir(tmp_path / "r")
    _finish(run)
    (run.root / "notes.txt").write_text("mine")
    run.log_file.write_text("{}\n")
    before = _tree(run.root)
    assert run.set_aside()
    assert sorted(p.name for p in run.root.iterdir()) == [".replaced", "notes.txt"]
    run.write({"status": "training"})  # the new run starts, then fails
    (run.checkpoints_dir / "checkpoint-1").mkdir(parents=True)
    run.restore()
    assert _tree(run.root) == before
    assert run.set_aside()
    run.drop_aside()  # the new run has its first durable result
    assert sorted(p.name for p in run.root.iterdir()) == ["notes.txt"]


def test_an_interrupted_overwrite_is_undone_by_the_next_check(tmp_path):
    run = RunDir(tmp_path / "r")
    _finish(run)
    before = _tree(run.root)
    run.set_aside()
    run.write({"status": "training"})  # killed here: no checkpoint, no model
    with pytest.raises(SettingError, match="already holds a finished run"):
        run.check(resume=False, overwrite=False)
    assert _tree(run.root) == before


def test_atomic_write_keeps_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert json.loads((tmp_path / "a.json").read_text()) == {}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left


def test_writable_dir_and_file_names(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SettingError, match="is not a directory"):
        check_writable_dir(f / "sub")
    assert check_writable_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    with pytest.raises(SettingError, match="without a directory part"):
        check_file_name("output_file", "a/b.csv", ".csv")
    with pytest.raises(SettingError, match="must end in .csv"):
        check_file_name("output_file", "b.txt", ".csv")


def test_a_checkpoint_without_its_weights_is_not_trusted(tmp_path):
    run = RunDir(tmp_path / "r")
    for step, files in ((2, ("trainer_state.json", "optimizer.pt", "adapter_model.safetensors")),
                        (4, ("trainer_state.json", "optimizer.pt"))):  # killed while saving step 4
        d = run.checkpoints_dir / f"checkpoint-{step}"
        d.mkdir(parents=True)
        for f in files:
            (d / f).write_text("x")
    assert run.latest_checkpoint().name == "checkpoint-2"


def test_resume_with_other_settings_names_every_difference():
    from gsm8k_lab.runs import check_same_settings

    check_same_settings("output_dir", "r", {"a": 1, "b": "x"}, {"a": 1, "b": "x"})
    check_same_settings("output_dir", "r", None, {"a": 1})  # nothing recorded: an older run
    with pytest.raises(SettingError) as err:
        check_same_settings("output_dir", "r", {"a": 1, "b": "x", "gone": {"k": 1}}, {"a": 2, "b": "x", "new": None})
    text = str(err.value)
    assert "a 1 (then) vs 2 (now)" in text and 'gone {"k": 1} (then) vs (unset) (now)' in text
    assert "new (unset) (then) vs unset (now)" in text and "b " not in text.split("settings:")[1]


def test_a_new_run_that_fails_early_leaves_no_trace(tmp_path):
    from gsm8k_lab.runs import NewRun

    run = RunDir(tmp_path / "a" / "b" / "r")
    new = NewRun(run)
    run.write({"status": "training"})
    run.log_file.write_text("{}\n")
    new.undo()
    assert list(tmp_path.iterdir()) == []  # the folders it made are gone too
    _finish(run)
    (run.root / "notes.txt").write_text("mine")
    new = NewRun(run)
    run.write({"status": "training"})
    new.commit()  # its first checkpoint: the old run goes, the user's other files stay
    assert sorted(p.name for p in run.root.iterdir()) == ["notes.txt", "run.json"]


def test_append_only_records_survive_separators_a_bom_and_deep_nesting(tmp_path):
    """U+2028 or a form feed inside a record is part of it; a BOM is no record; a record nested too
    deeply to read is damaged: nothing from it on is taken (no RecursionError)."""
    first = json.dumps({"text": "a\u2028b\x0cc\rd"}, ensure_ascii=False)
    head = ("\ufeff" + first + "\n").encode("utf-8")
    f = tmp_path / "log.jsonl"
    f.write_bytes(head + ("[" * 200_000 + "]" * 200_000 + "\n" + '{"x": 1}\n').encode())
    records, good, torn = read_jsonl(f)
    assert records == [json.loads(first)] and good == len(head) and torn
    assert jsonl_lines("\ufeffa\u2028b\r\nc\x0cd\n\ne") == ["a\u2028b", "c\x0cd", "", "e"]
