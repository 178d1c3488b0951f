"""The ``vllm:MODEL`` teacher: an in-process vLLM engine on the GPU (:class:`VLLMTeacher`), vLLM
imported only when one is built."""

from __future__ import annotations

from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.progress import report_tokens
from lab_tools.sdg.identity import teacher_identity
from lab_tools.sdg.teacher import ChatRequest, Completion, free_torch_memory
from lab_tools.sdg.truncation import fit_requests, mark_cut


class VLLMTeacher:
    """In-process vLLM engine (GPU). vLLM batches internally; ``seed`` is passed per request.

    ``tensor_parallel_size`` (GPUs), ``gpu_memory_utilization`` (fraction of each GPU's memory the
    engine reserves for weights and KV cache) and ``max_model_len`` (tokens; 0 = the model's
    own) are vLLM ``LLM(...)`` arguments (``generate.vllm_*``). ``schedules_batches``: the engine
    schedules a whole list of requests itself, so callers send everything at once.
    ``close()`` gives the GPU memory back (see :meth:`close`).

    Raises:
        LabError: vLLM is not installed."""

    on_gpu = True
    schedules_batches = True

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int = 0):
        try:
            from vllm import LLM, SamplingParams  # noqa: F401
        except ImportError as exc:
            raise LabError("teacher vllm:MODEL needs vLLM (pip install 'lab-tools[gpu]'): "
                           f"{exc}") from exc
        from vllm import LLM

        kwargs = dict(model=model, tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization)
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        self.tok = self.llm.get_tokenizer()
        self.name = f"vllm:{Path(model).name}"
        self.identity = teacher_identity(f"vllm:{model}")

    def count_tokens(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        from vllm import SamplingParams

        if self.llm is None:
            return [Completion("", error=f"vllm: {self.name} was closed") for _ in requests]
        try:
            context = int(self.llm.llm_engine.model_config.max_model_len)
        except Exception:  # noqa: BLE001 -- another vLLM layout: our own cap only
            context = 0
        requests, cuts = fit_requests(requests, self.count_tokens, context_len=context, cap=self.max_prompt_tokens)
        params = [SamplingParams(max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed)
                  for r in requests]
        try:
            results = self.llm.chat([r.messages for r in requests], params, use_tqdm=False)
        except Exception as exc:
            return [Completion("", error=f"vllm: {exc}") for _ in requests]
        out = [Completion(res.outputs[0].text, prompt_tokens=len(res.prompt_token_ids or []),
                          completion_tokens=len(res.outputs[0].token_ids)) for res in results]
        report_tokens(sum(c.completion_tokens for c in out))  # the engine returns the list at once
        return mark_cut(out, cuts)

    max_prompt_tokens = 0  # a cap of our own on prompts (make_teacher sets it), 0 = none

    def close(self) -> None:
        """Shut the engine down and give its GPU memory back; idempotent, never raises. ``del llm``
        alone does not free it (vllm-project/vllm#1908, #6544): the V1 engine core is shut down,
        then ``vllm.distributed.parallel_state.cleanup_dist_env_and_memory`` (vLLM's own cleanup,
        vllm-project/vllm#23793), else ``destroy_model_parallel`` and
        ``destroy_distributed_environment`` when importable, then ``gc.collect()`` and
        ``torch.cuda.empty_cache()``."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        try:
            if callable(getattr(core, "shutdown", None)):
                core.shutdown()
        except Exception:  # noqa: BLE001 -- best effort: the rest of the cleanup still runs
            pass
        del llm, core
        try:
            from vllm.distributed import parallel_state as ps
        except Exception:  # noqa: BLE001 -- an older or stripped vLLM: plain gc below
            ps = None
        if ps is not None:
            names = ("cleanup_dist_env_and_memory",) if hasattr(ps, "cleanup_dist_env_and_memory") \
                else ("destroy_model_parallel", "destroy_distributed_environment")
            for name in names:
                try:
                    getattr(ps, name)()
                except Exception:  # noqa: BLE001 -- nothing to destroy, or already destroyed
                    pass
        free_torch_memory()
