"""A continuous-batching decode loop for the transformers backend (CPU and GPU).

Today's static batches (``model.generate`` per batch) run every batch until its
longest completion ends, recompute the shared system prompt for every problem
and, with transformers' dynamic cache, copy the whole KV cache at every step.
This loop instead keeps ``batch_size`` rows decoding at once and:

- **refills** a finished row with a waiting problem (several at a time, prefilled
  in a few batched calls of rows of similar length, so little is padded), so no
  row idles until the batch's longest completion ends;
- computes the prompts' **shared prefix** (the chat template and system prompt,
  ~100 tokens) once and copies its KV into each new row, prefilling only the
  question;
- keeps the shared prefix's KV **once**: a decode step attends to it with one
  matmul over every row's queries (the prefix stays in the CPU's cache instead
  of being read from memory once per row), and to each row's own tokens from
  its buffer;
- writes each row's own KV into **preallocated buffers** in place, every row
  aligned on the right so all rows write column ``t`` at each step (its own
  positions and a padding mask keep rows apart), attention reading only from the
  first column a live row uses; when rows end, the rows that stay move into the
  freed slots (only the columns they use are copied; nothing is reallocated);
  when the buffer fills, columns no row uses are dropped from the left.

Decoding is exactly the settings': greedy is argmax, sampling applies the
repetition penalty, temperature, top-k, top-p and min-p in transformers' order,
then draws each row's token from **that row's own random stream** (one uniform
number per token, seeded by the job's seed, see :mod:`.base`), so a row samples
the same tokens whichever rows share its batch and whenever it was admitted.
It needs a decoder whose attention calls ``cache.update(k, v, layer_idx)`` and
accepts a 4D mask (Llama, Qwen2/3, Mistral, SmolLM...); :func:`supports` says.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import replace

from ..config import GenerationSettings
from .base import prompt_seeds

SUPPORTED = ("llama", "qwen2", "qwen3", "mistral", "smollm3", "olmo2", "granite")
MIN_SHARED_PREFIX = 8  # tokens; below this the prefix is not worth a separate pass
PREFILL_GROUP_TOKENS = 512  # a prefill group's least tokens (smaller matmuls run well below the GEMM's speed)
PREFILL_SLACK = 0.1  # the padding a prefill group may add to its rows' own tokens


ATTENTION = "gsm8k_lab_gqa"

#: The shared prefix's keys and values per layer (``[kv heads, prefix, dim]``) while a decode step runs:
#: every row attends to them through one matmul instead of a copy of its own (set by :func:`_decode`).
_SHARED_PREFIX: dict[int, tuple] = {}


def gqa_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention for grouped-query models without expanding K and V to every query head.

    transformers' SDPA path repeats the KV heads (a copy of the whole cache, every layer, every
    step) whenever a mask is given; here the query heads of a group share their KV head through
    a broadcast matmul instead. Returns ``[batch, q, heads, dim]`` like the built-in kernels.
    """
    import torch

    b, h, q, d = query.shape
    hkv = key.shape[1]
    g = h // hkv
    scale = scaling if scaling is not None else d ** -0.5
    qg = query.reshape(b, hkv, g * q, d)
    scores = torch.matmul(qg, key.transpose(-1, -2)) * scale
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[-2]]
        if q > 1 and g > 1:
            mask = mask[:, :, None].expand(-1, -1, g, -1, -1).reshape(mask.shape[0], 1, g * q, -1)
        scores = scores + mask
    shared = _SHARED_PREFIX.get(getattr(module, "layer_idx", None)) if _SHARED_PREFIX else None
    if shared is None:
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        out = torch.matmul(probs, value)
    else:  # a decode step: the prefix every row shares, as one matmul over all rows' queries, then the rows' own
        pk, pv = shared
        across = qg.transpose(0, 1).reshape(hkv, b * g * q, d)
        before = (torch.matmul(across, pk.transpose(-1, -2)) * scale).reshape(hkv, b, g * q, -1).transpose(0, 1)
        probs = torch.softmax(torch.cat([before, scores], dim=-1), dim=-1, dtype=torch.float32).to(query.dtype)
        p = pk.shape[-2]
        first = torch.matmul(probs[..., :p].transpose(0, 1).reshape(hkv, b * g * q, p), pv)
        out = first.reshape(hkv, b, g * q, -1).transpose(0, 1) + torch.matmul(probs[..., p:], value)
    out = out.reshape(b, hkv, g, q, -1).reshape(b, h, q, -1)
    return out.transpose(1, 2).contiguous(), None


def supports(model) -> bool:
    """A plain decoder of a family whose attention this loop drives (full attention, no soft-capping)."""
    config = getattr(model, "config", None)
    return (getattr(config, "model_type", None) in SUPPORTED and not getattr(config, "use_sliding_window", False)
            and hasattr(model, "get_decoder") and model.get_output_embeddings() is not None)


class RowCache:
    """Per-layer KV buffers ``[capacity, heads, length, dim]``, allocated once; the first ``rows`` slots are
    the live rows, and every row writes its next token at column ``t``. The keys are a transposed view of
    ``[capacity, heads, dim, length]`` storage: attention's ``query @ key^T`` then reads each row's keys in
    the layout the GEMM wants (1.8x faster than from ``[.., length, dim]`` here, the same values)."""

    def __init__(self, length: int, capacity: int = 0):
        self.length, self.capacity = length, capacity
        self.keys: dict[int, object] = {}
        self.values: dict[int, object] = {}
        self.t = 0
        self.rows = 0
        self.first = 0  # the first column any live row uses: attention reads from there

    def allocate(self, layers, heads: int, dim: int, dtype, device) -> None:
        """Every layer's buffers, for every row the batch will hold; zeroed, as attention reads a row's columns
        left of its start (masked) and they must be finite."""
        import torch

        for layer in layers:
            self.keys[layer] = torch.zeros(self.capacity, heads, dim, self.length, dtype=dtype,
                                           device=device).transpose(-1, -2)
            self.values[layer] = torch.zeros(self.capacity, heads, self.length, dim, dtype=dtype, device=device)

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        n = key_states.shape[2]
        rows = key_states.shape[0]
        k, v = self.keys[layer_idx][:rows], self.values[layer_idx][:rows]
        k[:, :, self.t:self.t + n] = key_states
        v[:, :, self.t:self.t + n] = value_states
        return k[:, :, self.first:self.t + n], v[:, :, self.first:self.t + n]

    def live(self):
        """Each layer's key and value buffers, cut to the live rows (views)."""
        for store in (self.keys, self.values):
            for buf in store.values():
                yield buf[:self.rows]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.t


class PrefixCache:
    """The shared prefix's KV in front of a batch of suffixes (during their prefill); keeps the suffix KV."""

    def __init__(self, prefix: dict[int, tuple], rows: int):
        self.prefix, self.rows = prefix, rows
        self.suffix: dict[int, tuple] = {}

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        import torch

        self.suffix[layer_idx] = (key_states, value_states)
        if layer_idx not in self.prefix:
            return key_states, value_states
        pk, pv = self.prefix[layer_idx]
        return (torch.cat([pk.expand(self.rows, -1, -1, -1), key_states], dim=2),
                torch.cat([pv.expand(self.rows, -1, -1, -1), value_states], dim=2))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


class KeepAll:
    """A cache that only records what it is given (the prefix's own pass)."""

    def __init__(self):
        self.kv: dict[int, tuple] = {}

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        self.kv[layer_idx] = (key_states, value_states)
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


def decode(model, encoded: list[list[int]], jobs: list[tuple[int, int]], gen: GenerationSettings,
           batch_size: int, eos_ids: set[int], stop_check,
           seeds: list[int] | None = None) -> Iterator[tuple[int, int, list[int], bool]]:
    """Generate for each job ``(prompt index, sample)``; yields ``(prompt index, sample, new tokens,
    finished)`` as rows end (``finished``: EOS or a stop string, not the token budget).

    ``seeds``: one per prompt (default: :func:`~.base.prompt_seeds` of ``gen`` by position); job
    ``(i, k)`` samples from its own stream seeded with ``seeds[i] + k``. Greedy decoding uses none.
    """

    restore = _use_gqa_attention(model)
    try:
        yield from _decode(model, encoded, jobs, gen, batch_size, eos_ids, stop_check, seeds)
    finally:
        restore()


def rollout_func(gen: GenerationSettings, seed: int, merged: bool = False):
    """A TRL ``rollout_func`` for GRPO: the group completions from this loop.

    The prompts are tokenized as TRL tokenizes them, each one (already repeated once per
    completion of its group by TRL's sampler) gets one completion, sampled with ``gen`` under
    ``seed``, moved with the step and the process (``seed + 1000003 x step + process index``); no
    stop string, so completions end at EOS or the length budget exactly as TRL's own generation.
    The policy samples in eval mode (no LoRA dropout); with ``merged`` the adapter is merged
    into the weights for the rollout and unmerged after.
    """

    def rollout(prompts: list[str], trainer) -> dict:
        import torch

        model = trainer.accelerator.unwrap_model(trainer.model)
        tok = trainer.processing_class
        ids = tok(text=prompts)["input_ids"]
        step_seed = seed + 1_000_003 * trainer.state.global_step + trainer.accelerator.process_index
        step_gen = replace(gen, seed=step_seed, max_new_tokens=trainer.max_completion_length)
        eos = set(getattr(trainer, "eos_token_ids", None) or [tok.eos_token_id])
        training = model.training
        model.eval()
        if merged:
            model.merge_adapter()
        out: list[list[int]] = [[] for _ in prompts]
        try:
            with torch.no_grad():
                jobs = [(i, 0) for i in range(len(prompts))]
                for i, _, tokens, _ in decode(model, ids, jobs, step_gen, len(prompts), eos, lambda t: False):
                    out[i] = tokens
        finally:
            if merged:
                model.unmerge_adapter()
            model.train(training)
        return {"prompt_ids": ids, "completion_ids": out, "logprobs": None}

    return rollout


def row_stream(seed: int) -> random.Random:
    """One job's random stream: a uniform number per sampled token."""
    return random.Random(seed)


class Sampler:
    """Greedy argmax, or transformers' processors in their order: repetition penalty, temperature,
    top-k, top-p, min-p; then one draw per row from that row's own stream (inverse CDF: the first
    token whose cumulative probability exceeds the row's uniform number). A row's token depends on
    its logits and its stream only, never on the other rows of the batch."""

    def __init__(self, gen: GenerationSettings, penalize: bool = True):
        """``penalize``: apply the repetition penalty here (model.generate applies its own)."""
        self.gen = gen
        self.penalize = penalize

    def __call__(self, logits, histories, streams=None):
        """``histories``: a callable giving each row's prompt + generated tokens (only the penalty needs them);
        ``streams``: each row's :func:`row_stream` (sampling only)."""
        import torch

        with torch.inference_mode():
            return self._choose(logits, histories, streams)

    def _choose(self, logits, histories, streams):
        import torch

        g = self.gen
        if g.repetition_penalty != 1.0 and self.penalize:
            for r, history in enumerate(histories()):
                idx = torch.tensor(sorted(set(history)), device=logits.device)
                picked = logits[r, idx]
                logits[r, idx] = torch.where(picked < 0, picked * g.repetition_penalty, picked / g.repetition_penalty)
        if g.greedy:
            return logits.argmax(-1).cpu()
        return draw(self.warp(logits), [s.random() for s in streams])

    def warp(self, logits):
        """Temperature, top-k, top-p and min-p, as transformers' warpers apply them."""
        import torch

        g = self.gen
        logits = logits / g.temperature
        if g.top_k:
            kth = torch.topk(logits, min(g.top_k, logits.shape[-1])).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if g.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=False)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            remove = cumulative <= (1 - g.top_p)
            remove[:, -1] = False
            logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        if g.min_p:
            probs = logits.softmax(-1)
            floor = probs.max(-1, keepdim=True).values * g.min_p
            logits = logits.masked_fill(probs < floor, float("-inf"))
        return logits


def draw(logits, uniforms: list[float]):
    """One token per row: the first whose cumulative probability exceeds ``uniform x total`` (total: the
    row's summed probabilities, 1 up to rounding). Never a token of probability 0. Returns a CPU tensor."""
    import torch

    cdf = logits.softmax(-1).cumsum(-1)
    total = cdf[:, -1:]
    u = torch.tensor(uniforms, dtype=torch.float64)[:, None]
    x = (u * total.double().cpu()).to(cdf.dtype).to(cdf.device)
    x = torch.minimum(x, torch.nextafter(total, torch.zeros_like(total)))  # below the total, even once rounded
    chosen = torch.searchsorted(cdf, x, right=True).clamp_(max=logits.shape[-1] - 1)
    # a scan that is not exactly monotone (a parallel one on a GPU) could land on a token of probability 0
    ruled_out = logits.gather(1, chosen) == float("-inf")
    if ruled_out.any():
        chosen = torch.where(ruled_out, logits.argmax(-1, keepdim=True), chosen)
    return chosen[:, 0].cpu()


def _shared_prefix(encoded: list[list[int]], used: list[int]) -> int:
    """Tokens every used prompt starts with, minus one (each row keeps at least one token to prefill)."""
    if not used:
        return 0
    seqs = [encoded[i] for i in dict.fromkeys(used)]
    first, n = seqs[0], min(len(s) for s in seqs) - 1
    p = 0
    while p < n and all(s[p] == first[p] for s in seqs):
        p += 1
    return p if p >= MIN_SHARED_PREFIX else 0


def _prefill_groups(lengths: list[int]) -> list[list[int]]:
    """The new rows (indices into ``lengths``) in groups prefilled together, each padded to its longest:
    rows sorted by length, a group closed once it holds ``PREFILL_GROUP_TOKENS`` tokens and the next row
    would pad it by more than ``PREFILL_SLACK`` (one group for all would pad short questions to the longest:
    92% more tokens than the questions' own on the first 64 test problems, 9% in groups)."""
    groups: list[list[int]] = []
    group: list[int] = []
    tokens = 0
    for r in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[r]
        if group and tokens >= PREFILL_GROUP_TOKENS and n * (len(group) + 1) > (1 + PREFILL_SLACK) * (tokens + n):
            groups.append(group)
            group, tokens = [], 0
        group.append(r)
        tokens += n
    if group:
        groups.append(group)
    return groups


def _select(cache: RowCache, keep: list[int], starts: list[int]) -> None:
    """Keep the rows ``keep`` (increasing) in the first slots, in their order, in place: each kept row that
    moves copies only the columns it uses (from its start, ``starts`` of the kept rows, to ``t``) into the
    slot of a row that left. Nothing is reallocated and rows that stay where they are are not touched."""
    for slot, (row, start) in enumerate(zip(keep, starts)):
        if row != slot:  # row > slot: its source is never a slot written before it
            for buf in cache.live():
                buf[slot, :, start:cache.t] = buf[row, :, start:cache.t]
    cache.rows = len(keep)


def _shift_right(cache: RowCache, rows: list[dict], by: int) -> None:
    """Move every row's columns right (so a longer prompt fits before column t)."""
    for buf in cache.live():
        _move_columns(buf, 0, by, cache.t)
    for row in rows:
        row["start"] += by
    cache.t += by


def _compact(cache: RowCache, rows: list[dict]) -> None:
    """Drop the columns on the left that no row uses any more."""
    drop = min(row["start"] for row in rows)
    if drop <= 0:
        raise RuntimeError("KV buffer full: a row is longer than the buffer")  # cannot happen: sized for it
    for buf in cache.live():
        _move_columns(buf, drop, 0, cache.t - drop)
    for row in rows:
        row["start"] -= drop
    cache.t -= drop


def _move_columns(buf, src: int, dst: int, n: int) -> None:
    """Move columns ``src..src+n`` of ``buf`` (dim 2) to ``dst..dst+n`` in place, in chunks no wider than the
    distance moved (so a chunk's source and destination never overlap), without a temporary copy of the
    buffer (a fresh buffer's pages are first touched, which some virtual machines make slow)."""
    step = abs(dst - src)
    if not step or n <= 0:
        return
    starts = range(0, n, step) if dst < src else reversed(range(0, n, step))
    for c in starts:
        w = min(step, n - c)
        buf[:, :, dst + c:dst + c + w] = buf[:, :, src + c:src + c + w]


def _use_gqa_attention(model):
    """Switch the model's attention to :func:`gqa_attention`; returns a function that switches back."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, gqa_attention)
    configs = {id(c): c for c in (model.config, getattr(model.get_decoder(), "config", model.config))}.values()
    before = [(c, c._attn_implementation) for c in configs]
    for c in configs:
        c._attn_implementation = ATTENTION

    def restore() -> None:
        for c, impl in before:
            c._attn_implementation = impl

    return restore


def _decode(model, encoded, jobs, gen, batch_size, eos_ids, stop_check, seeds=None):
    import torch

    if not gen.greedy and seeds is None:
        seeds = prompt_seeds(gen, len(encoded))

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    prefix_len = _shared_prefix(encoded, [i for i, _ in jobs])
    prefix_ids = encoded[jobs[0][0]][:prefix_len] if jobs else []
    prefix_kv: dict[int, tuple] = {}
    neg = torch.finfo(dtype).min
    if prefix_len:
        keep = KeepAll()
        causal = torch.ones(prefix_len, prefix_len, dtype=torch.bool).tril()
        mask = torch.zeros(1, 1, prefix_len, prefix_len, dtype=dtype).masked_fill(~causal, neg)
        with torch.inference_mode():
            decoder(input_ids=torch.tensor([prefix_ids], device=device), past_key_values=keep, use_cache=True,
                    position_ids=torch.arange(prefix_len, device=device)[None], attention_mask=mask.to(device))
        prefix_kv = keep.kv
    # [kv heads, prefix, dim] per layer, the keys stored transposed as in the rows' buffers
    shared = {layer: (k[0].transpose(-1, -2).contiguous().transpose(-1, -2), v[0])
              for layer, (k, v) in prefix_kv.items()}
    # a row's buffer holds its own tokens (the shared prefix is kept once): at most its suffix and completion.
    # Rows admitted later start further right, so a batch that refills keeps room to drop columns no row uses
    # any more (compaction) less often; one that never refills needs none. The buffers are sized to this, not
    # more: first-touched memory is not free (page faults cost ~25 us per 4 KiB page on some virtual machines).
    longest = max(len(encoded[i]) for i, _ in jobs) - prefix_len
    capacity = min(batch_size, len(jobs))
    room = max(64, gen.max_new_tokens // 2) if len(jobs) > capacity else 1
    cache = RowCache(longest + gen.max_new_tokens + room, capacity)
    sampler = Sampler(gen)
    queue = deque(jobs)
    rows: list[dict] = []  # per row: job, start column, generated tokens
    refill_at = max(1, batch_size // 8)
    next_tokens = None

    def admit(count: int) -> None:
        nonlocal next_tokens
        new = [queue.popleft() for _ in range(min(count, len(queue)))]
        if not new:
            return
        suffixes = [encoded[i][prefix_len:] for i, _ in new]
        m = len(new)
        logits = [None] * m
        suffix_kv: list[dict[int, tuple]] = [{} for _ in range(m)]  # per new row: its layers' (key, value)
        for group in _prefill_groups([len(s) for s in suffixes]):
            width = max(len(suffixes[r]) for r in group)
            n = len(group)
            ids = torch.full((n, width), 0, dtype=torch.long)
            for j, r in enumerate(group):
                ids[j, :len(suffixes[r])] = torch.tensor(suffixes[r])
            pos = torch.arange(prefix_len, prefix_len + width)[None].expand(n, -1)
            # suffix token j sees the whole prefix and suffix tokens <= j (right padding is never seen)
            allowed = torch.ones(n, 1, width, prefix_len + width, dtype=torch.bool)
            allowed[:, 0, :, prefix_len:] = torch.ones(width, width, dtype=torch.bool).tril()
            mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, neg)
            pcache = PrefixCache(prefix_kv, n)
            with torch.inference_mode():
                hidden = decoder(input_ids=ids.to(device), position_ids=pos.to(device),
                                 attention_mask=mask.to(device), past_key_values=pcache,
                                 use_cache=True).last_hidden_state
                last = torch.tensor([len(suffixes[r]) - 1 for r in group], device=device)
                out = head(hidden[torch.arange(n, device=device), last]).float()
            for j, r in enumerate(group):
                logits[r] = out[j]
                suffix_kv[r] = {layer: (k[j, :, :len(suffixes[r])], v[j, :, :len(suffixes[r])])
                                for layer, (k, v) in pcache.suffix.items()}
        streams = None if gen.greedy else [row_stream(seeds[i] + k) for i, k in new]
        first = sampler(torch.stack(logits), lambda: [encoded[i] for i, _ in new], streams)
        # make room: each new row ends at column t, so t must be at least its prompt length
        need = max(len(s) for s in suffixes)  # a row's buffer holds its own tokens: the prefix is shared
        if cache.t < need:
            _shift_right(cache, rows, need - cache.t)
        base = len(rows)
        if not cache.keys:  # the first rows: allocate the buffers, for every row the batch will hold
            k = next(iter(suffix_kv[0].values()))[0]
            cache.allocate(suffix_kv[0], k.shape[0], k.shape[2], k.dtype, device)
        cache.rows = base + m
        for r, (job, s) in enumerate(zip(new, suffixes)):
            start = cache.t - len(s)
            slot = base + r
            for layer, (k, v) in suffix_kv[r].items():
                cache.keys[layer][slot, :, start:cache.t] = k
                cache.values[layer][slot, :, start:cache.t] = v
            rows.append({"job": job, "start": start, "tokens": [int(first[r])], "prompt": encoded[job[0]],
                         "stream": streams[r] if streams else None})
        tail = first.to(device)[:, None]
        next_tokens = tail if next_tokens is None else torch.cat([next_tokens, tail])

    admit(batch_size)
    while rows:
        # rows whose last token ended them leave; their slots are refilled
        done = []
        for r, row in enumerate(rows):
            tok = row["tokens"][-1]
            if tok in eos_ids or stop_check(row["tokens"]):
                done.append((r, True))
            elif len(row["tokens"]) >= gen.max_new_tokens:
                done.append((r, False))
        if done:
            for r, finished in done:
                i, k = rows[r]["job"]
                yield i, k, rows[r]["tokens"], finished
            keep = [r for r in range(len(rows)) if r not in {d for d, _ in done}]
            rows = [rows[r] for r in keep]
            next_tokens = next_tokens[keep] if keep else None
            _select(cache, keep, [row["start"] for row in rows])
        if queue and batch_size - len(rows) >= (refill_at if rows else 1):
            admit(batch_size - len(rows))
        if not rows:
            break
        if cache.t + 1 > cache.length:
            _compact(cache, rows)
        starts = torch.tensor([row["start"] for row in rows])
        cache.first = min(row["start"] for row in rows)
        pos = torch.tensor([[prefix_len + cache.t - row["start"]] for row in rows])
        cols = torch.arange(cache.first, cache.t + 1)
        mask = torch.zeros(len(rows), 1, 1, len(cols), dtype=dtype).masked_fill(
            (cols[None, :] < starts[:, None])[:, None, None, :], neg)
        _SHARED_PREFIX.update(shared)
        try:
            with torch.inference_mode():
                hidden = decoder(input_ids=next_tokens, position_ids=pos.to(device), attention_mask=mask.to(device),
                                 past_key_values=cache, use_cache=True).last_hidden_state
                logits = head(hidden[:, -1]).float()
        finally:
            _SHARED_PREFIX.clear()
        cache.t += 1
        chosen = sampler(logits, lambda rows=rows: [row["prompt"] + row["tokens"] for row in rows],
                         [row["stream"] for row in rows])
        for row, tok in zip(rows, chosen.tolist()):
            row["tokens"].append(tok)
        next_tokens = chosen.to(device)[:, None]
