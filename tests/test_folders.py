"""What a folder holds, and where a command may write (folders.py)."""

import json
import os
from pathlib import Path

import pytest

from gsm8k_lab.config import SettingError
from gsm8k_lab.folders import Kind, check_output_folder, check_path, folder_kind


def _make(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            p.mkdir(exist_ok=True)
        else:
            p.write_text(content)
    return root


@pytest.mark.parametrize("files,kind", [
    ({}, None),
    ({"a/": "", "b/x.txt": ""}, None),  # only folders: an experiment's root
    ({"run.json": "{}"}, Kind.RUN),
    ({"model/": "", "debug/": ""}, Kind.RUN),
    ({"checkpoints/": ""}, Kind.RUN),
    ({".replaced/": ""}, Kind.RUN),
    ({"config.json": "{}"}, Kind.MODEL),
    ({"adapter_config.json": "{}"}, Kind.MODEL),
    ({"model.safetensors": ""}, Kind.MODEL),
    ({"report.md": "", "accuracy.png": ""}, Kind.REPORT),
    ({"t.jsonl": "", "t.jsonl.stats.json": "{}"}, Kind.TRACES),
    ({"t.jsonl.progress.jsonl": ""}, Kind.TRACES),
    ({"sweep.json": "{}", "sft/": ""}, Kind.SWEEP),
    ({"debug/e.csv": ""}, Kind.EVALUATION),
    ({"debug": "a file named debug"}, Kind.EVALUATION),
    ({"notes.txt": "mine"}, Kind.OTHER),
    ({".hidden": "", "a/": ""}, None),
])
def test_a_folder_is_known_by_what_it_holds(tmp_path, files, kind):
    assert folder_kind(_make(tmp_path / "f", files) if files else tmp_path / "missing") is kind


def test_a_command_writes_only_into_its_own_kind(tmp_path):
    evaluation = _make(tmp_path / "ev", {"debug/e.csv": "index\n"})
    run = _make(tmp_path / "run", {"run.json": json.dumps({"status": "complete"}), "model/": ""})
    check_output_folder("output_dir", evaluation, Kind.EVALUATION)
    check_output_folder("output_dir", tmp_path / "new", Kind.RUN)
    with pytest.raises(SettingError, match="holds an evaluation, not a training run: nothing there is replaced"):
        check_output_folder("output_dir", evaluation, Kind.RUN)
    with pytest.raises(SettingError, match="holds a training run, not traces"):
        check_output_folder("output_dir", run, Kind.TRACES)
    check_output_folder("output_dir", run, Kind.EVALUATION, allow=(Kind.RUN,))
    with pytest.raises(SettingError, match="holds a training run, not the runs of an experiment"):
        check_output_folder("root", run, None)
    with pytest.raises(SettingError, match="is a file, not a folder"):
        check_output_folder("out", _make(tmp_path, {"f.txt": "x"}) / "f.txt", Kind.REPORT)


@pytest.mark.parametrize("part", ["model", "checkpoints", "debug", ".replaced"])
def test_nothing_is_written_inside_a_run_s_own_folders(tmp_path, part):
    run = _make(tmp_path / "run", {"run.json": "{}", f"{part}/": ""})
    with pytest.raises(SettingError, match=f"is inside {run}/{part}/, which belongs to that run"):
        check_output_folder("output_dir", run / part / "inner", Kind.RUN)
    evaluation = _make(tmp_path / "ev", {"debug/e.csv": ""})
    with pytest.raises(SettingError, match="is inside .*/debug/"):
        check_output_folder("output_dir", evaluation / "debug" / "x", Kind.EVALUATION)
    check_output_folder("output_dir", tmp_path / "elsewhere" / "model" / "x", Kind.RUN)  # no run there


def test_paths_the_file_system_cannot_take_are_named(tmp_path):
    with pytest.raises(SettingError, match="a name in it is 300 bytes long, more than the 255"):
        check_path("output_dir", tmp_path / ("n" * 300), output=True)
    with pytest.raises(SettingError, match="more than the 4095 a path may have"):
        check_path("data", "/".join(["d" * 200] * 25))
    with pytest.raises(SettingError, match="a lone surrogate"):
        check_path("output_dir", str(tmp_path / "bad\ud800x"), output=True)
    with pytest.raises(SettingError, match="holds a NUL character"):
        check_path("data", "a\x00b")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(SettingError, match="goes through a loop of symbolic links"):
        check_path("model.name", tmp_path / "a")
    with pytest.raises(SettingError, match="run. goes through a loop of symbolic links"):
        check_path("output_dir", tmp_path / "a" / "run", output=True)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SettingError, match="is a symbolic link to .*nowhere, which does not exist"):
        check_path("output_dir", tmp_path / "dangling", output=True)
    check_path("data", tmp_path / "dangling")  # an input: its loader says it does not exist
    with pytest.raises(SettingError, match="is the root of the file system"):
        check_path("output_dir", "/", output=True)
    for system in ("/proc/gsm8k", "/sys/x", "/dev/null"):
        with pytest.raises(SettingError, match="a kernel or device file system"):
            check_path("out", system, output=True)
    assert check_path("output_dir", tmp_path / "fine", output=True) == tmp_path / "fine"


def test_the_cache_must_be_a_folder(tmp_path, monkeypatch):
    from gsm8k_lab import runtime
    from gsm8k_lab.config import UsageError

    file = tmp_path / "cache.txt"
    file.write_text("x")
    monkeypatch.setenv("GSM8K_LAB_CACHE", str(file))
    with pytest.raises(UsageError, match="GSM8K_LAB_CACHE=.*cache.txt is a file, expected a folder"):
        runtime.cache_dir()
    monkeypatch.setenv("GSM8K_LAB_CACHE", str(file / "below"))
    with pytest.raises(UsageError, match="is a file"):
        runtime.cache_dir()
    monkeypatch.setenv("GSM8K_LAB_CACHE", str(tmp_path / "new" / "cache"))
    assert runtime.cache_dir() == tmp_path / "new" / "cache"
    assert not (tmp_path / "new").exists()
    monkeypatch.delenv("GSM8K_LAB_CACHE")
    assert runtime.cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "gsm8k-lab"
