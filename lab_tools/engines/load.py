"""Load a local model for the scoring and answering workloads (MC log-likelihood, reference
log-likelihood, greedy answers, A/B next-token probabilities) on the engine ``generate.engine``
picks: a :class:`lab_tools.engines.ct2.CT2Model` or a PyTorch model. :mod:`lab_tools.eval.scoring`
and :mod:`lab_tools.eval.preference` take either.
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.engines import REFERENCE, engine_tag, resolve_engine
from lab_tools.engines.ct2 import CT2Model
from lab_tools.models import load_model, resolve_model
from lab_tools.sdg.backends import local_model_identity


def scoring_engine(spec: str | Path, engine: str = "auto") -> str:
    """The engine :func:`load_scoring_model` would use for ``spec`` (a folder or ``embedded``),
    without loading anything. Raises LabError like :func:`lab_tools.engines.resolve_engine`."""
    return resolve_engine(engine, None if str(spec) == "embedded" else Path(spec))


def scoring_tag(spec: str | Path, engine: str = "auto", compute_type: str = "int8") -> str:
    """What a score cache key adds for the engine (:func:`lab_tools.engines.engine_tag`): ``""``
    for transformers, ``+ctranslate2-<version>-<compute type>`` otherwise."""
    return engine_tag(scoring_engine(spec, engine), compute_type)


def load_scoring_model(spec: str | Path, cache_dir=None, *, engine: str = "auto", compute_type: str = "int8",
                       threads: int = 0):
    """``(model, tokenizer)`` of ``spec`` (a local model folder or ``embedded``) for scoring:
    a :class:`CT2Model` (its ``tok``) when the engine resolves to ``ctranslate2``, else
    :func:`lab_tools.models.load_model`'s PyTorch model.

    Raises:
        LabError: see :func:`lab_tools.models.resolve_model`, :func:`lab_tools.engines.resolve_engine`
        and :class:`CT2Model`.
    """
    if scoring_engine(spec, engine) == REFERENCE:
        return load_model(spec, cache_dir=cache_dir)
    path = resolve_model(spec, cache_dir)
    model = CT2Model(path, local_model_identity(path), cache_dir, compute_type=compute_type, threads=threads)
    return model, model.tok
