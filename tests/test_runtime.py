"""The runtime decision: device, dtype and CPU threads, once per process."""

import pytest

from gsm8k_lab import runtime
from gsm8k_lab.config import Settings


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    for var in ("LOCAL_WORLD_SIZE", "ACCELERATE_NUM_PROCESSES", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def test_threads_are_the_cores_shared_among_local_processes(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 8)
    assert runtime.decide(Settings()).threads == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert runtime.decide(Settings()).threads == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert runtime.decide(Settings()).threads == 1
    s = Settings()
    s.runtime.threads = 3
    assert runtime.decide(s).threads == 3  # the setting wins


def test_dtype_choice(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert runtime.pick_dtype("auto", "cpu") == "bf16"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.pick_dtype("auto", "cpu") == "fp32"
    assert runtime.pick_dtype("fp16", "cpu") == "fp16"


def test_decided_once_and_applied(monkeypatch, capsys):
    import torch

    s = Settings()
    s.runtime.threads = 1
    s.model.dtype = "fp32"
    rt = runtime.current(s)
    assert torch.get_num_threads() == 1
    other = Settings()
    other.model.dtype = "bf16"
    assert runtime.current(other) is rt  # later calls do not decide again
    assert "runtime: cpu, 1 threads, fp32" in capsys.readouterr().out
    assert rt.as_dict() == {"device": "cpu", "dtype": "fp32", "threads": 1, "local_processes": 1}


NVIDIA_535 = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"


def test_a_gpu_that_torch_cannot_use_is_refused_naming_driver_and_build(tmp_path, monkeypatch):
    """torch 2.13's CUDA 13.0 wheels need driver 580+: on an older driver torch sees no GPU, and the run
    must not quietly crawl on the CPU."""
    from gsm8k_lab.config import UsageError

    driver = tmp_path / "version"
    driver.write_text(NVIDIA_535)
    monkeypatch.setattr(runtime, "NVIDIA_DRIVER_FILE", driver)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("torch.version.cuda", "13.0")
    with pytest.raises(UsageError) as err:
        runtime.decide(Settings())
    assert "NVIDIA GPU is present (driver 535.104.05)" in str(err.value)
    assert "built for CUDA 13.0, which needs driver 580 or newer" in str(err.value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hidden on purpose: the CPU is what was asked for
    assert runtime.decide(Settings()).device == "cpu"
    monkeypatch.setattr(runtime, "NVIDIA_DRIVER_FILE", tmp_path / "absent")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert runtime.decide(Settings()).device == "cpu"  # no NVIDIA driver: a CPU machine


def test_the_refusal_is_one_line_before_anything_is_written(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from gsm8k_lab import cli

    driver = tmp_path / "version"
    driver.write_text(NVIDIA_535)
    monkeypatch.setattr(runtime, "NVIDIA_DRIVER_FILE", driver)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    out = tmp_path / "ev"
    assert cli.main(["evaluate", "--model-path", str(tiny_model_dir), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: an NVIDIA GPU is present (driver 535.104.05)")
    assert not (out / "debug").exists()
