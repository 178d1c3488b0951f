"""Load a local model for the scoring and answering workloads (MC log-likelihood, reference
log-likelihood, greedy answers, A/B next-token probabilities) on the engine ``generate.engine``
picks: a :class:`lab_tools.engines.ct2.CT2Model` or a PyTorch model. :mod:`lab_tools.eval.scoring`
and :mod:`lab_tools.eval.preference` take either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab_tools.engines import REFERENCE, engine_tag, resolve_engine
from lab_tools.engines.ct2 import CT2Model
from lab_tools import models  # as a module: tests replace models.load_model
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
        return models.load_model(spec, cache_dir=cache_dir)
    path = models.resolve_model(spec, cache_dir)
    model = CT2Model(path, local_model_identity(path), cache_dir, compute_type=compute_type, threads=threads)
    return model, model.tok


@dataclass(frozen=True)
class Scorer:
    """Which engine loads the models that checkpoint selection, the preference phase's selection
    and its policy-reward check score and answer with (:func:`load_scoring_model`): ``engine``
    (``generate.engine``), ``compute_type`` (``generate.engine_compute_type``), ``cache_dir``
    (converted copies go to ``<cache>/ct2``). The default is the reference backend (transformers),
    which library callers and tests get unless they pass :func:`scorer_of` a config."""
    engine: str = REFERENCE
    compute_type: str = "int8"
    cache_dir: str | None = None

    def load(self, spec: str | Path):
        """``(model, tokenizer)`` of ``spec`` on this engine (see :func:`load_scoring_model`)."""
        return load_scoring_model(spec, self.cache_dir, engine=self.engine, compute_type=self.compute_type)

    def tag(self, spec: str | Path) -> str:
        """What a cache of scores made by this engine on ``spec`` adds to its key
        (:func:`scoring_tag`): scores of one engine are never reused for another."""
        return scoring_tag(spec, self.engine, self.compute_type)


def scorer_of(cfg) -> Scorer:
    """The :class:`Scorer` of a loaded ``lab.yaml`` (:class:`lab_tools.config.LabConfig`)."""
    return Scorer(cfg.generate.engine, cfg.generate.engine_compute_type, str(cfg.cache_path))


REFERENCE_SCORER = Scorer()  # transformers: the default of the library functions that take a scorer
