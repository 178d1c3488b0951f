"""CTranslate2 on CPU: a local causal LM converted once from its Hugging Face folder, then batched
generation (:meth:`CT2Model.generate`) and scoring (:meth:`CT2Model.score`,
:meth:`CT2Model.next_token_logprobs`) in-process.

Conversion: ``ctranslate2.converters.TransformersConverter`` on the model folder (the embedded
model's safetensors cache, a checkpoint, a release), weights quantized to the compute type
(``int8``: int8 weights and int8 GEMMs with float32 accumulation; ``int8_float32`` is the same
on CPU; ``float32``: the reference's arithmetic, used by the parity tests). The result lives in
``<cache>/ct2/<name>-<key>/`` where ``key`` hashes the source folder's identity (the caller's:
:func:`lab_tools.sdg.backends.local_model_identity`, which holds the path, config and weight
files), the ctranslate2 version and the compute type, written atomically (a crash leaves no half model).

The model's own tokenizer and chat template (:func:`lab_tools.models.load_tokenizer`) encode the
prompts, so token ids, stop tokens and templates are those of the transformers backend. Sampling
follows transformers' order (temperature, then top-k, then top-p); the end tokens are the
generation config's ``eos_token_id`` (one id or a list) and the tokenizer's EOS, as
``model.generate`` stops on them.
"""

from __future__ import annotations

import gc
import hashlib
import json
from pathlib import Path

from lab_tools import progress
from lab_tools.atomic import atomic_dir
from lab_tools.config import default_cache_dir
from lab_tools.engines import cpu_threads
from lab_tools.errors import LabError
from lab_tools.models import load_tokenizer

DEFAULT_TOP_K = 50  # transformers' GenerationConfig default, used when the model's config sets none
# Fewest prompts a batch of greedy answers holds on this engine (the presets' ``batch_size`` sizes
# PyTorch's memory): on 2 cores a decode step of 14 sequences of the 135M model took 0.10 s, one
# of 1 sequence 0.047 s (2026-12-07), so answering 16 prompts at once is ~7x the tokens/s of one.
ANSWER_BATCH = 16
# Batches run side by side, one thread each, rather than one batch on every thread: the 135M model's
# matrices are too small for two threads to share one (OpenMP waits), so on 2 cores two batches of
# one thread each decoded 1.2-1.8x the tokens/s of one batch on two threads, and one sequence
# 41 tok/s on one thread vs 28 on two (bench: 2026-12-07). More cores go to each batch.
MAX_PARALLEL_BATCHES = 2


def _ct2():
    try:
        import ctranslate2
    except ImportError as exc:
        raise LabError(f"engine ctranslate2 is not installed (pip install ctranslate2): {exc}",
                       field="generate.engine") from None
    return ctranslate2


def converted_dir(src: str | Path, source_identity: str, cache_dir: str | Path | None = None,
                  compute_type: str = "int8") -> Path:
    """The CTranslate2 copy of the Hugging Face model folder ``src`` with weights in
    ``compute_type``, converted on first use (the embedded 135M model: ~7 s on 2 cores) and then
    reused while ``source_identity`` (the folder's identity: path, config, weights) is unchanged.

    Raises:
        LabError: ctranslate2 is missing, or its converter fails on the model (message names it).
    """
    ct2 = _ct2()
    src = Path(src)
    key = hashlib.sha256(json.dumps([source_identity, ct2.__version__, compute_type]).encode())
    target = Path(cache_dir or default_cache_dir()) / "ct2" / f"{src.name}-{key.hexdigest()[:16]}"
    if (target / "model.bin").is_file():
        return target
    from ctranslate2.converters import TransformersConverter

    # The converter calls gc.collect() once per layer; in a process that holds torch,
    # transformers and datasets each call walks every live object (~0.17 s, 30 layers: 5 of the
    # 6.5 s of a 135M conversion). Freezing what is alive now lets each collect look only at the
    # converter's own objects; the frozen ones go back to the collector afterwards.
    gc.freeze()
    try:
        with atomic_dir(target) as tmp:
            TransformersConverter(str(src), low_cpu_mem_usage=True).convert(
                str(tmp), quantization=compute_type, force=True)
    except LabError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the converter raises many types; one clean message
        raise LabError(f"ctranslate2 could not convert the model: {type(exc).__name__}: {exc}",
                       file=str(src), field="generate.engine") from None
    finally:
        gc.unfreeze()
    return target


class CT2Model:
    """A local causal LM on CTranslate2 (CPU) with the model's own tokenizer (``tok``).

    Args:
        src: the Hugging Face model folder (config, safetensors, tokenizer with chat template).
        source_identity: its identity (:func:`lab_tools.sdg.backends.local_model_identity`): the
            converted copy is reused while it is the same.
        cache_dir: the LAB cache (converted models go to ``ct2/`` in it).
        compute_type: ``int8`` (default; fastest on AVX2), ``int8_float32`` or ``float32``.
        threads: CPU threads; 0 = every CPU this process may use. They run up to
            :data:`MAX_PARALLEL_BATCHES` sub-batches side by side (``inter_threads``), each on
            ``threads // workers`` threads (``intra_threads``); a call's batch is split so that
            every worker has a part.

    Raises:
        LabError: ctranslate2 is missing, the conversion fails, or the folder has no tokenizer.
    """

    def __init__(self, src: str | Path, source_identity: str, cache_dir=None, *, compute_type: str = "int8",
                 threads: int = 0):
        ct2 = _ct2()
        self.src = Path(src)
        self.compute_type = compute_type
        self.tok = load_tokenizer(self.src)
        self.dir = converted_dir(self.src, source_identity, cache_dir, compute_type)
        self.threads = cpu_threads(threads)
        self.workers = max(1, min(self.threads, MAX_PARALLEL_BATCHES))
        self.generator = self._load(ct2)
        self.top_k, self.end_ids, self.context_len = _generation_defaults(self.src, self.tok)

    def _load(self, ct2, workers: int | None = None):
        """The model on ``workers`` worker threads (default: all of :attr:`workers`), each with
        its share of the CPU threads."""
        return ct2.Generator(str(self.dir), device="cpu", compute_type=self.compute_type,
                             intra_threads=max(1, self.threads // self.workers),
                             inter_threads=self.workers if workers is None else workers)

    def _part(self, n: int) -> int:
        """Rows per worker when ``n`` rows are split across the workers (the last part may be smaller)."""
        return -(-n // self.workers)

    def _reseed(self, ct2, seed: int) -> None:
        """Seed the sampling of the next call. CTranslate2 seeds each worker thread's random
        generator once, when the thread first samples (``ctranslate2::get_random_generator``: a
        ``thread_local`` ``std::mt19937`` from the global seed), so a later ``set_random_seed``
        does not reach a loaded model: the model is loaded again (its threads are new) after
        setting the seed (~0.5 s for 135M parameters on 2 cores)."""
        self.generator.unload_model()
        self.generator = None
        ct2.set_random_seed(int(seed) % 2**32)
        self.generator = self._load(ct2)

    def _sample(self, ct2, tokens: list[list[str]], seed: int, opts: dict) -> list:
        """One seeded sampled batch on every worker: the batch is cut into one part per worker,
        each decoded by a copy of the model loaded for it after ``set_random_seed(seed)`` (one
        thread, so its random state is the seed's whatever else ran before: the result does not
        depend on which thread took which part, as it would with one pool's workers). The
        copies load in ~0.2 s each and are freed after the batch. One worker: :meth:`_reseed`."""
        if self.workers == 1:
            self._reseed(ct2, seed)
            return self.generator.generate_batch(tokens, **opts)
        from concurrent.futures import ThreadPoolExecutor

        n = self._part(len(tokens))
        parts = [tokens[i:i + n] for i in range(0, len(tokens), n)]
        ct2.set_random_seed(int(seed) % 2**32)
        gens = [self._load(ct2, workers=1) for _ in parts]
        try:  # generate_batch releases the GIL: the parts decode side by side
            with ThreadPoolExecutor(len(parts)) as pool:
                done = list(pool.map(lambda g, p: g.generate_batch(p, **opts), gens, parts))
        finally:
            for g in gens:
                g.unload_model()
        return [r for part in done for r in part]

    def close(self) -> None:
        """Free the model's memory (a later call fails). Idempotent."""
        gen, self.generator = getattr(self, "generator", None), None
        if gen is not None:
            gen.unload_model()

    def tokens(self, ids: list[int]) -> list[str]:
        """Token ids as the token strings CTranslate2 takes (its vocabulary is the tokenizer's)."""
        return self.tok.convert_ids_to_tokens(ids)

    def generate(self, prompts: list[list[int]], *, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, top_k: int | None = None, seed: int | None = 0,
                 batch_size: int = 16) -> list[list[int]]:
        """New token ids for each prompt (token ids, chat template already applied), at most
        ``max_new_tokens`` each. Decoding stops at an end token (the generation config's
        ``eos_token_id`` or the tokenizer's EOS); the ids are cut before the tokenizer's EOS or pad
        token, and an end token that is neither stays, as the transformers backend does with
        what ``model.generate`` returns.

        ``temperature`` 0: greedy (top-k 1). Else sampling with temperature, top-k (default: the
        model's generation config, else 50, as transformers) and ``top_p``, seeded with ``seed``
        (``seed + k`` for the call's k-th batch, :meth:`_sample`) so a rerun of the same call gives
        the same ids; ``seed`` None: the engine's running random state (no reload: an interactive chat).
        ``batch_size``: most sequences decoded together (:func:`length_chunks` groups them); each
        batch is split across the workers (:data:`MAX_PARALLEL_BATCHES`).
        Each decoded token is reported to :func:`lab_tools.progress.report_tokens`.
        """
        if not prompts:
            return []
        ct2 = _ct2()
        if self.generator is None:
            raise LabError("the ctranslate2 model was closed")
        greedy = temperature <= 0
        results: list = [None] * len(prompts)
        opts = dict(max_length=max_new_tokens, include_prompt_in_result=False, end_token=self.end_ids,
                    return_end_token=True, sampling_topk=1 if greedy else (top_k or self.top_k),
                    sampling_topp=1.0 if greedy else top_p, sampling_temperature=1.0 if greedy else temperature,
                    callback=progress.bind_budget(_report_step))
        for k, chunk in enumerate(length_chunks([len(p) for p in prompts], batch_size, max_new_tokens)):
            tokens = [self.tokens(prompts[i]) for i in chunk]
            if greedy or seed is None:  # deterministic (greedy) or unseeded: the pool splits the batch
                got = self.generator.generate_batch(tokens, max_batch_size=self._part(len(chunk)), **opts)
            else:
                got = self._sample(ct2, tokens, seed + k, opts)
            for i, res in zip(chunk, got):
                results[i] = list(res.sequences_ids[0])
        out = []
        for ids in results:
            ids = ids[:max_new_tokens]
            for stop in (self.tok.eos_token_id, self.tok.pad_token_id):
                if stop is not None and stop in ids:
                    ids = ids[:ids.index(stop)]
            out.append(ids)
        return out

    def score(self, seqs: list[list[int]], batch_size: int = 16) -> list[list[float]]:
        """Log-probabilities (nats) of tokens ``1..n-1`` of each sequence given the tokens before
        them (``score_batch``): ``n - 1`` values per sequence of ``n`` tokens, nothing truncated."""
        if not seqs:
            return []
        longest = max(len(s) for s in seqs)
        res = self.generator.score_batch([self.tokens(s) for s in seqs],
                                         max_batch_size=min(batch_size, self._part(len(seqs))),
                                         max_input_length=longest + 1)
        progress.report_tokens(sum(len(s) for s in seqs))
        return [list(r.log_probs) for r in res]

    def next_token_logprobs(self, seqs: list[list[int]], token_ids: list[int]) -> list[list[float]]:
        """For each sequence, the log-probabilities (nats, normalized over the whole vocabulary) of
        the next token being each of ``token_ids``. One prefill per sequence, alone in its batch
        (``generate_batch`` of one step with ``return_logits_vocab``: a batch would feed every
        token past the shortest prompt one decode step at a time), read at its last position;
        about 2x ``forward_batch``, which returns the log-probabilities of every position."""
        import numpy as np

        if not seqs:
            return []
        res = self.generator.generate_batch(
            [self.tokens(s) for s in seqs], max_batch_size=1, max_length=1, include_prompt_in_result=False,
            return_logits_vocab=True, sampling_topk=1)
        out = []
        for r in res:
            logits = np.asarray(r.logits[0], dtype=np.float64).ravel()
            top = logits.max()
            lse = top + float(np.log(np.exp(logits - top).sum()))
            out.append([float(logits[t] - lse) for t in token_ids])
        progress.report_tokens(sum(len(s) for s in seqs))
        return out


def length_chunks(lengths: list[int], batch_size: int, max_new_tokens: int) -> list[list[int]]:
    """Indices of prompts (their token ``lengths``) grouped into batches of at most
    ``batch_size``, shortest first, a new batch starting where a prompt is more than
    ``max_new_tokens`` longer than the batch's shortest.

    Why: CTranslate2 prefills a batch only up to its shortest prompt and feeds each longer
    prompt's remaining tokens one decode step at a time (``generate_batch``,
    ``include_prompt_in_result=False``), so a batch costs about ``spread + max_new_tokens``
    steps; with the spread bounded by ``max_new_tokens`` a batch takes at most twice the steps of
    its decoding. Measured on 2 cores: 8 prompts of 9 tokens and 8 of 279 tokens, 32 new tokens,
    took 1.4-1.9x as long in one batch as in two. One-token prompts get batches of their own:
    beside one, CTranslate2 4.8 forwards nothing at once and returns the longer prompts' tails at
    the head of their results (checked in ``tests/sdg/test_engine_parity.py``).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        first = lengths[chunks[-1][0]] if chunks else 0
        if chunks and len(chunks[-1]) < batch_size and lengths[i] - first <= max_new_tokens \
                and (first == 1) == (lengths[i] == 1):
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def _report_step(step) -> bool:
    """``generate_batch`` callback: one decoded token; never stops the decoding."""
    progress.report_tokens(1)
    return False


def _generation_defaults(src: Path, tok) -> tuple[int, list[int], int]:
    """``(top_k, end token ids, context length)`` as ``model.generate`` uses them: the folder's
    ``generation_config.json`` ``top_k`` (else :data:`DEFAULT_TOP_K`) and its ``eos_token_id``
    (an id or a list), plus the tokenizer's EOS; ``config.json``'s ``max_position_embeddings``
    (0 = unknown)."""
    cfg: dict = {}
    for name in ("generation_config.json", "config.json"):
        try:
            data = json.loads((src / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for k, v in data.items():
            cfg.setdefault(k, v)
    top_k = cfg.get("top_k") or DEFAULT_TOP_K
    eos = cfg.get("eos_token_id")
    ends = [e for e in (eos if isinstance(eos, list) else [eos]) if isinstance(e, int)]
    if tok.eos_token_id is not None and tok.eos_token_id not in ends:
        ends.append(tok.eos_token_id)
    return int(top_k), ends, int(cfg.get("max_position_embeddings") or 0)
