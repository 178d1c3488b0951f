"""The ``transformers:PATH|embedded`` teacher (and judge) run on CTranslate2 instead of PyTorch
(``generate.engine``: :mod:`lab_tools.engines`): the same requests, chat template, sampling
settings, seeds and stop rules as :class:`lab_tools.sdg.backends.TransformersTeacher`, about
2x its tokens/s on a CPU (``bench/results/engine-cpu.md``).
"""

from __future__ import annotations

import hashlib

from lab_tools.engines.ct2 import CT2Model
from lab_tools.sdg.teacher import ChatRequest, Completion, LocalTemplate
from lab_tools.sdg.truncation import fit_requests, mark_cut

TOP_P = 0.95  # TransformersTeacher's top_p when sampling


class CT2Teacher(LocalTemplate):
    """A local model on CTranslate2 behind the Teacher interface.

    Requests are grouped by (max_tokens, temperature) like the transformers backend and decoded
    ``batch_size`` at a time (CTranslate2 sorts each group by length). Sampling is seeded per group
    from the requests' seeds, so a rerun with the same requests gives the same texts; greedy
    requests (temperature 0) are deterministic. ``name``: ``ctranslate2:<model folder name>``;
    ``identity``: the transformers identity plus the engine, version and compute type.

    Args:
        path: the model folder (the embedded model's safetensors cache, a checkpoint).
        identity: the teacher identity (:func:`lab_tools.sdg.backends.teacher_identity`).
        source_identity: the folder's identity, which keys its converted copy.
        batch_size, compute_type, threads: see :class:`lab_tools.engines.ct2.CT2Model`.

    Raises:
        LabError: ctranslate2 is missing, the model cannot be converted or has no tokenizer.
    """

    def __init__(self, path, *, identity: str, source_identity: str, cache_dir=None, batch_size: int = 16,
                 compute_type: str = "int8", threads: int = 0):
        self.engine = CT2Model(path, source_identity, cache_dir, compute_type=compute_type, threads=threads)
        self.tok = self.engine.tok
        self.batch_size = batch_size
        self.name = f"ctranslate2:{path.name}"
        self.identity = identity
        self.model_dir = str(path)  # the Hugging Face folder it was converted from (judge identity checks)

    on_gpu = False

    def close(self) -> None:
        """Free the model (a later ``generate`` returns errors). Idempotent."""
        if self.engine is not None:
            self.engine.close()
        self.engine = None

    @property
    def context_len(self) -> int:
        """Tokens of prompt + reply the model takes (its ``max_position_embeddings``; 0 = unknown)."""
        return self.engine.context_len if self.engine is not None else 0

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        """Answer every request (same order); prompts longer than the context (or
        ``max_prompt_tokens``) are cut first, as every backend does (:mod:`lab_tools.sdg.truncation`)."""
        if self.engine is None:
            return [Completion("", error=f"{self.name} was closed") for _ in requests]
        requests, cuts = fit_requests(requests, self.count_tokens, context_len=self.context_len,
                                      cap=self.max_prompt_tokens, count_prompt=self._count_prompt)
        out: list[Completion | None] = [None] * len(requests)
        prompts: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            try:
                prompts[i] = self.tok(self._prompt(r), add_special_tokens=False)["input_ids"]
            except Exception as exc:  # a template error is one bad request, not a crash
                out[i] = Completion("", error=f"chat template: {exc}")
        groups: dict[tuple, list[int]] = {}
        for i in prompts:
            groups.setdefault((requests[i].max_tokens, float(requests[i].temperature)), []).append(i)
        for (max_tokens, temp), idxs in groups.items():
            seed_src = ",".join(str(requests[i].seed) for i in idxs)
            seed = int(hashlib.sha256(seed_src.encode()).hexdigest()[:8], 16)
            try:
                new = self.engine.generate([prompts[i] for i in idxs], max_new_tokens=max_tokens,
                                           temperature=temp, top_p=TOP_P, seed=seed,
                                           batch_size=self.batch_size)
            except Exception as exc:  # e.g. out of memory: record it for the whole group
                for i in idxs:
                    out[i] = Completion("", error=f"generate: {exc}")
                continue
            for i, ids in zip(idxs, new):  # cut at EOS / pad like TransformersTeacher
                out[i] = Completion(self.tok.decode(ids, skip_special_tokens=True),
                                    prompt_tokens=len(prompts[i]), completion_tokens=len(ids))
        return mark_cut(out, cuts)  # type: ignore[return-value]
