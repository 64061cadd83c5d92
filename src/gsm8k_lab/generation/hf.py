"""The transformers backend: batched ``model.generate`` on any device.

Prompts are sorted by length and batched with left padding and a KV cache;
decoding is greedy or sampled exactly as the :class:`GenerationSettings` say.
Both engines sample each completion from its own seeded stream (:mod:`.base`):
the refill loop in its sampler, ``model.generate`` (the ``static`` engine, for
model families the loop does not drive) through :class:`RowSampling`, a logits
processor that makes the same per-row draw and hands ``generate`` a one-token
distribution to pick greedily, so static batches keep their batching and
sample exactly as the loop does.
The model's own ``generation_config.json`` is replaced by a clean one that
keeps only its special tokens, so a repetition penalty or top-k shipped with a
model cannot change what "greedy" means.
"""

from __future__ import annotations

import time

from ..config import GenerationSettings
from ..task import prompt_ids
from .base import STOP, Completion, prompt_seeds
from .refill import Sampler, decode, row_stream, supports


class TransformersBackend:
    """Batched ``model.generate`` with left padding and length-sorted batches."""

    name = "transformers"

    def __init__(self, model, tokenizer, batch_size: int | None = None, engine: str = "auto"):
        from transformers import GenerationConfig

        self.model = model.eval()
        # "refill": the continuous-batching loop of refill.py; "static": model.generate per batch
        self.engine = ("refill" if supports(model) else "static") if engine == "auto" else engine
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # None: the settings' batch size at each call
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        own = getattr(model, "generation_config", None)
        eos = getattr(own, "eos_token_id", None) if own is not None else None
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = sorted({*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id} - {None})
        # Nothing but the special tokens survives from the model's generation defaults.
        model.generation_config = GenerationConfig(
            bos_token_id=getattr(own, "bos_token_id", None), eos_token_id=self.eos_ids,
            pad_token_id=tokenizer.pad_token_id)
        self._stop_criteria = None

    def describe(self) -> str:
        p = next(self.model.parameters())
        quant = getattr(self.model, "_gsm8k_quantized", None)
        dtype = str(p.dtype).replace("torch.", "") + (f", {quant} dynamic linear layers" if quant else "")
        return f"transformers on {p.device} ({dtype}, {self.engine} batches)"

    def close(self) -> None:
        self.model = None

    def generate_iter(self, prompts, gen: GenerationSettings, n: int = 1, desc: str = "generating", keys=None):
        """``keys``: one stable key per prompt for its sampling seed (:mod:`.base`; default: positions)."""
        seeds = None if gen.greedy else prompt_seeds(gen, len(prompts), keys)
        if self.engine == "refill":
            yield from self._refill_iter(prompts, gen, n, desc, seeds)
        else:
            yield from self._static_iter(prompts, gen, n, desc, seeds)

    def _refill_iter(self, prompts, gen: GenerationSettings, n: int, desc: str, seeds=None):
        from tqdm.auto import tqdm

        batch_size = self.batch_size or gen.batch_size
        encoded = [prompt_ids(self.tokenizer, p) for p in prompts]
        # longest prompts first: a long prompt admitted late would shift every row to make room
        jobs = sorted(((i, k) for i in range(len(prompts)) for k in range(n)), key=lambda j: (-len(encoded[j[0]]), j))
        if self._stop_criteria is None:
            self._stop_criteria = StopOnText(self.tokenizer, STOP)
        stop = self._stop_criteria
        results: dict[int, list[Completion | None]] = {}
        t0, n_tokens, n_done = time.perf_counter(), 0, 0
        bar = tqdm(total=len(prompts), desc=desc, unit="problem", dynamic_ncols=True)
        try:
            for i, k, toks, _ in decode(self.model, encoded, jobs, gen, batch_size, set(self.eos_ids),
                                        stop.matches, seeds):
                comp = self._decode(toks)
                n_tokens += comp.n_tokens
                slot = results.setdefault(i, [None] * n)
                slot[k] = comp
                if all(c is not None for c in slot):
                    n_done += 1
                    bar.update(1)
                    elapsed = time.perf_counter() - t0
                    bar.set_postfix(problems_s=f"{n_done / elapsed:.2f}", tok_s=f"{n_tokens / elapsed:.0f}")
                    yield [i], [results.pop(i)]
        finally:
            bar.close()

    def _static_iter(self, prompts, gen: GenerationSettings, n: int, desc: str, seeds=None):
        import torch
        from tqdm.auto import tqdm
        from transformers import LogitsProcessorList

        tok = self.tokenizer
        batch_size = self.batch_size or gen.batch_size
        encoded = [prompt_ids(tok, p) for p in prompts]
        # Sorting by length keeps padding (wasted compute) low within each batch.
        jobs = sorted(((i, k) for i in range(len(prompts)) for k in range(n)),
                      key=lambda job: (len(encoded[job[0]]), job[0], job[1]))
        results: dict[int, list[Completion | None]] = {}
        device = next(self.model.parameters()).device
        if not gen.greedy and seeds is None:
            seeds = prompt_seeds(gen, len(prompts))
        gen_kwargs = self._generate_kwargs(gen)
        t0, n_tokens, n_done = time.perf_counter(), 0, 0
        bar = tqdm(total=len(prompts), desc=desc, unit="problem", dynamic_ncols=True)
        try:
            for start in range(0, len(jobs), batch_size):
                batch = jobs[start:start + batch_size]
                ids = [encoded[i] for i, _ in batch]
                width = max(len(x) for x in ids)
                input_ids = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
                attention = torch.zeros((len(ids), width), dtype=torch.long)
                for row, x in enumerate(ids):
                    input_ids[row, width - len(x):] = torch.tensor(x)
                    attention[row, width - len(x):] = 1
                kwargs = gen_kwargs
                if not gen.greedy:  # this batch's rows, each with its own stream
                    kwargs = {**gen_kwargs, "logits_processor": LogitsProcessorList(
                        [RowSampling(gen, [seeds[i] + k for i, k in batch])])}
                with torch.inference_mode():
                    out = self.model.generate(
                        input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
                    )
                new_tokens = out[:, width:].tolist()
                finished = []
                for (i, k), toks in zip(batch, new_tokens):
                    comp = self._decode(toks)
                    n_tokens += comp.n_tokens
                    slot = results.setdefault(i, [None] * n)
                    slot[k] = comp
                    if all(c is not None for c in slot):
                        finished.append(i)
                if finished:
                    n_done += len(finished)
                    bar.update(len(finished))
                    elapsed = time.perf_counter() - t0
                    bar.set_postfix(problems_s=f"{n_done / elapsed:.2f}", tok_s=f"{n_tokens / elapsed:.0f}")
                    yield finished, [results.pop(i) for i in finished]
        finally:
            bar.close()

    # ------------------------------------------------------------------
    def _generate_kwargs(self, gen: GenerationSettings) -> dict:
        """Every decoding choice explicit: nothing is left to the model's defaults. Sampling is not
        ``generate``'s own (one stream for the whole batch): it picks greedily what :class:`RowSampling`
        (added per batch) drew, after applying the repetition penalty itself."""
        from transformers import GenerationConfig, StoppingCriteriaList

        if self._stop_criteria is None:
            self._stop_criteria = StopOnText(self.tokenizer, STOP)
        explicit = dict(
            max_new_tokens=gen.max_new_tokens, min_new_tokens=0, use_cache=True,
            eos_token_id=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id,
            repetition_penalty=gen.repetition_penalty, num_beams=1, no_repeat_ngram_size=0,
        )
        explicit.update(do_sample=False)
        return dict(generation_config=GenerationConfig(**explicit),
                    stopping_criteria=StoppingCriteriaList([self._stop_criteria]))

    def _decode(self, toks: list[int]) -> Completion:
        tok = self.tokenizer
        stop_ids = {*self.eos_ids, tok.pad_token_id}
        end = next((j for j, t in enumerate(toks) if t in stop_ids), None)
        hit_eos = end is not None
        kept = toks[: end + 1] if hit_eos else toks  # count the EOS token the model produced
        text = tok.decode(toks[: end] if hit_eos else toks, skip_special_tokens=True)
        hit_stop = False
        for s in STOP:
            cut = text.find(s)
            if cut != -1:
                text, hit_stop = text[: cut + len(s)], True
        return Completion(text, len(kept), truncated=not (hit_eos or hit_stop))


class RowSampling:
    """A logits processor for ``model.generate``: each row's token drawn from that row's own stream,
    exactly as the refill loop's sampler draws it (temperature, top-k, top-p, min-p, then the row's
    uniform number), returned as a distribution with one token left, which greedy decoding picks.
    ``generate`` applies the repetition penalty before it. Rows that have ended draw too (their
    tokens are padding), so a row's stream advances one number per step, as in the loop."""

    def __init__(self, gen: GenerationSettings, seeds: list[int]):
        self.sampler = Sampler(gen, penalize=False)
        self.streams = [row_stream(s) for s in seeds]

    def __call__(self, input_ids, scores):
        import torch

        chosen = self.sampler(scores.float(), None, self.streams).to(scores.device)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, chosen[:, None], 0.0)


class StopOnText:
    """Stop a sequence once its text contains a stop string, cheaply.

    transformers' ``stop_strings`` matches every sequence against the whole
    vocabulary at every step; on a GPU that tripled the time per token of a
    135M model (see docs/benchmarks.md). Here a step costs one ``isin`` over
    the last tokens: only rows whose last token holds the stop strings' final
    character are decoded (their last few tokens) and searched.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        import torch

        self.tokenizer, self.stops = tokenizer, stops
        finals = {s[-1] for s in stops}
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.final_ids = torch.tensor([i for i, p in enumerate(pieces) if p and any(c in p for c in finals)])
        self._final_set = set(self.final_ids.tolist())
        lengths = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stops]
        self.window = max(lengths) + 2

    def matches(self, tokens: list[int]) -> bool:
        """One row's tokens end in a stop string (cheap unless the last token can end one)."""
        if not tokens or tokens[-1] not in self._final_set:
            return False
        tail = self.tokenizer.decode(tokens[-self.window:], skip_special_tokens=True)
        return any(s in tail for s in self.stops)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        last = input_ids[:, -1]
        candidates = torch.isin(last, self.final_ids.to(last.device))
        done = torch.zeros_like(candidates)
        if candidates.any():
            for row in candidates.nonzero().flatten().tolist():
                tail = self.tokenizer.decode(input_ids[row, -self.window:], skip_special_tokens=True)
                done[row] = any(s in tail for s in self.stops)
        return done
