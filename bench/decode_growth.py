"""How the default CPU engine's cost grows with the decode batch and the completion length.

For each decode batch B (8, 16, 32, 64, 128) and completion length L (128, 256, 512): the first B test
problems (the embedded model unless --model-path), greedy, every row made to write exactly L tokens (no
EOS or stop string ends a row, so the work is B x L tokens and nothing else varies), through the refill
loop in one batch of B rows. Each cell runs in a process of its own, so its peak memory is its own.

Prints, per cell: seconds of generation, of which the KV buffers' allocation (first-touched memory,
which some virtual machines make slow), tokens/s, the KV buffers' size and the process's peak resident
memory above the loaded model (VmHWM after resetting it once the model is loaded).

    uv run python bench/decode_growth.py [--batches 8 16 32 64 128] [--lengths 128 256 512] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time


def child(batch: int, length: int, dtype: str, model_path: str | None) -> dict:
    """One cell, in this process: generate ``batch`` x ``length`` tokens and measure."""
    import torch

    from gsm8k_lab import runtime
    from gsm8k_lab.config import GenerationSettings, Settings
    from gsm8k_lab.data import load_split
    from gsm8k_lab.generation import refill
    from gsm8k_lab.models import load_model, load_tokenizer, resolve_model
    from gsm8k_lab.task import build_prompt

    settings = Settings()
    settings.model.dtype = dtype
    runtime.current(settings)
    ref = resolve_model(model_path)
    tokenizer = load_tokenizer(ref)
    model = load_model(ref, settings)
    problems = load_split("test")[:batch]
    encoded = [tokenizer(build_prompt(tokenizer, p.question), add_special_tokens=False)["input_ids"]
               for p in problems]
    allocating, kv_bytes = [0.0], [0]
    allocate = refill.RowCache.allocate

    def timed(self, *args, **kwargs):
        t = time.perf_counter()
        allocate(self, *args, **kwargs)
        allocating[0] += time.perf_counter() - t
        kv_bytes[0] = sum(b.numel() * b.element_size() for b in (*self.keys.values(), *self.values.values()))

    refill.RowCache.allocate = timed
    with open("/proc/self/clear_refs", "w") as f:  # peak resident memory from here on
        f.write("5")
    loaded = _status_kib("VmRSS")
    gen = GenerationSettings(max_new_tokens=length)
    tokens = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for _, _, out, _ in refill.decode(model, encoded, [(i, 0) for i in range(batch)], gen, batch, set(),
                                          lambda t: False):
            tokens += len(out)
    seconds = time.perf_counter() - t0
    return {"batch": batch, "length": length, "seconds": seconds, "allocation": allocating[0], "tokens": tokens,
            "kv_mib": kv_bytes[0] / 2**20, "peak_mib": (_status_kib("VmHWM") - loaded) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path")
    ap.add_argument("--batches", nargs="+", type=int, default=[8, 16, 32, 64, 128])
    ap.add_argument("--lengths", nargs="+", type=int, default=[128, 256, 512])
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--child", nargs=2, type=int, metavar=("BATCH", "LENGTH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(*args.child, args.dtype, args.model_path)))
        return
    import torch

    flags = sorted(set(re.findall(r"avx512_bf16|avx512f|avx2|amx_bf16", open("/proc/cpuinfo").read())))
    print(f"refill loop, {args.dtype}, greedy, every row writing exactly L tokens, one batch of B rows; "
          f"CPU flags {' '.join(flags)}, torch {torch.__version__}")
    print("| batch | length | seconds | of which allocation | tokens/s | KV buffers MiB | peak above model MiB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for length in args.lengths:
        for batch in args.batches:
            cmd = [sys.executable, __file__, "--child", str(batch), str(length), "--dtype", args.dtype]
            if args.model_path:
                cmd += ["--model-path", args.model_path]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            r = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            print(f"| {batch} | {length} | {r['seconds']:.1f} | {r['allocation']:.1f} | "
                  f"{r['tokens'] / r['seconds']:.0f} | {r['kv_mib']:.0f} | {r['peak_mib']:.0f} |", flush=True)


def _status_kib(key: str) -> int:
    """A field of /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(key + ":")).split()[1])


if __name__ == "__main__":
    main()
