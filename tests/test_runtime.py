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
