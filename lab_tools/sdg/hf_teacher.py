"""The ``transformers:`` teacher on PyTorch (the reference backend): an in-process Hugging Face
model, batched generation with left padding (:class:`TransformersTeacher`)."""

from __future__ import annotations

import hashlib

from lab_tools.progress import TokenStreamer
from lab_tools.sdg.identity import teacher_identity
from lab_tools.sdg.teacher import ChatRequest, Completion, LocalTemplate, free_torch_memory
from lab_tools.sdg.truncation import fit_requests, mark_cut


class TransformersTeacher(LocalTemplate):
    """In-process Hugging Face model. Requests are grouped by (max_tokens, temperature), sorted by
    prompt length (less padding) and generated ``batch_size`` at a time with left padding.
    Sampling is seeded per batch from the requests' seeds, so a rerun with the same requests in
    the same order gives the same texts."""

    def __init__(self, model_spec: str, cache_dir=None, batch_size: int = 16):
        from lab_tools.models import load_model, resolve_model

        path = resolve_model(model_spec, cache_dir)
        self.model, self.tok = load_model(path)
        self.tok.padding_side = "left"
        self.batch_size = batch_size
        self.name = f"transformers:{path.name}"
        self.identity = teacher_identity(f"transformers:{model_spec}", cache_dir, engine="transformers")

    @property
    def on_gpu(self) -> bool:
        """Whether the loaded model sits on a CUDA device (False once closed)."""
        model = getattr(self, "model", None)
        return model is not None and getattr(getattr(model, "device", None), "type", "cpu") == "cuda"

    def close(self) -> None:
        """Drop the model (a later ``generate`` fails) and give its GPU memory back. Idempotent."""
        self.model = None
        free_torch_memory()

    @property
    def context_len(self) -> int:
        """Tokens of prompt + reply the model takes (``max_position_embeddings``; 0 = unknown)."""
        return int(getattr(getattr(self.model, "config", None), "max_position_embeddings", 0) or 0)

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        import torch

        if self.model is None:
            return [Completion("", error=f"{self.name} was closed") for _ in requests]
        requests, cuts = fit_requests(requests, self.count_tokens, context_len=self.context_len,
                                      cap=self.max_prompt_tokens, count_prompt=self._count_prompt)
        out: list[Completion | None] = [None] * len(requests)
        prompts = []
        for i, r in enumerate(requests):
            try:
                prompts.append(self._prompt(r))
            except Exception as exc:  # a template error is one bad request, not a crash
                prompts.append(None)
                out[i] = Completion("", error=f"chat template: {exc}")
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            if prompts[i] is not None:
                groups.setdefault((r.max_tokens, float(r.temperature)), []).append(i)
        for (max_tokens, temp), idxs in groups.items():
            idxs.sort(key=lambda i: len(prompts[i]))
            for start in range(0, len(idxs), self.batch_size):
                batch = idxs[start:start + self.batch_size]
                enc = self.tok([prompts[i] for i in batch], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(self.model.device)
                kwargs = dict(max_new_tokens=max_tokens, pad_token_id=self.tok.pad_token_id,
                              streamer=TokenStreamer())  # decode steps x batch -> progress
                if temp > 0:
                    seed_src = ",".join(str(requests[i].seed) for i in batch)
                    torch.manual_seed(int(hashlib.sha256(seed_src.encode()).hexdigest()[:8], 16))
                    kwargs.update(do_sample=True, temperature=temp, top_p=0.95)
                else:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                try:
                    with torch.no_grad():
                        gen = self.model.generate(**enc, **kwargs)
                except Exception as exc:  # e.g. out of memory: record it for the whole batch
                    for i in batch:
                        out[i] = Completion("", error=f"generate: {exc}")
                    continue
                new = gen[:, enc["input_ids"].shape[1]:]
                for row, i in enumerate(batch):
                    ids = new[row].tolist()
                    n = len(ids)
                    for stop in (self.tok.eos_token_id, self.tok.pad_token_id):
                        if stop is not None and stop in ids:
                            n = min(n, ids.index(stop))
                    text = self.tok.decode(ids[:n], skip_special_tokens=True)
                    out[i] = Completion(text, prompt_tokens=int(enc["attention_mask"][row].sum()),
                                        completion_tokens=n)
        return mark_cut(out, cuts)  # type: ignore[return-value]
