"""Response configurations and their rubric for synthetic comparisons (ALMoST, arXiv 2305.13735).

A *configuration* is one way of prompting a model for a response: (model, demonstrations, number
of shots, system prompt, prompt format). ALMoST ranks the responses of several configurations by
a rule of thumb instead of human labels (its README, "Construct Synthetic comparisons"): a larger
model beats a smaller one, more shots beat fewer, better demonstrations beat worse. The *rubric*
is that ranking written down, best first; configurations listed together tie (ALMoST's nested
``--rubric`` list) and are never paired with each other.

Demonstrations (the in-context examples):

- ``leaf``: the leaf's own seed examples (taxonomy-driven: the leaf's examples are the "better
  demonstrations" for its own prompts);
- ``hhh``: generic helpful / honest / harmless dialogues written for this project
  (``lab_tools/feedback/demos.yaml``);
- ``none``: zero-shot.

Formats: ``chat`` (the model's chat template, system prompt and demonstrations as earlier turns)
or ``raw`` (a vanilla-model prompt, ``Human: ...\\n\\nAssistant: ...`` as ALMoST's prompted
responses; needs an in-process model or the scripted teacher).

Model specs: ``teacher`` (``generate.teacher``), ``student`` (``train.student`` as an in-process
transformers model) or any teacher backend spec (``transformers:PATH``, ``openai:URL#MODEL``,
``vllm:MODEL``, ``scripted:[PATH]``). ``license`` records the terms of a model whose outputs
become training data (e.g. ``Gemma Terms of Use``); it is copied into the dataset and model cards.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources

import yaml

from lab_tools.errors import ConfigError

DEMONSTRATIONS = ("leaf", "hhh", "none")
FORMATS = ("chat", "raw")
SYSTEM = "You are a helpful, honest and harmless assistant. Answer the request fully and precisely."

#: CPU preset: one model (the embedded one), shots and demonstrations axes only.
CPU_PRESET = {
    "configurations": [
        {"name": "leaf-3shot", "model": "teacher", "demonstrations": "leaf", "shots": 3, "system": SYSTEM},
        {"name": "hhh-1shot", "model": "teacher", "demonstrations": "hhh", "shots": 1},
        {"name": "raw-0shot", "model": "teacher", "demonstrations": "none", "shots": 0, "format": "raw"},
    ],
    "rubric": ["leaf-3shot", "hhh-1shot", "raw-0shot"],
}
#: GPU preset: adds the size axis (the teacher is larger than the student base).
GPU_PRESET = {
    "configurations": [
        {"name": "teacher-leaf-3shot", "model": "teacher", "demonstrations": "leaf", "shots": 3, "system": SYSTEM},
        {"name": "teacher-hhh-1shot", "model": "teacher", "demonstrations": "hhh", "shots": 1},
        {"name": "student-leaf-3shot", "model": "student", "demonstrations": "leaf", "shots": 3, "system": SYSTEM},
        {"name": "student-raw-0shot", "model": "student", "demonstrations": "none", "shots": 0, "format": "raw"},
    ],
    "rubric": ["teacher-leaf-3shot", "teacher-hhh-1shot", "student-leaf-3shot", "student-raw-0shot"],
}
PRESETS = {"cpu": CPU_PRESET, "gpu": GPU_PRESET}
_KEYS = {"name", "model", "demonstrations", "shots", "system", "format", "license"}


@dataclass(frozen=True)
class Configuration:
    """One response configuration. ``rank``: its place in the rubric, 0 = best (equal = tie);
    ``model``: the resolved backend spec; ``license``: terms of the model's outputs, or None."""
    name: str
    model: str
    demonstrations: str = "none"
    shots: int = 0
    system: str | None = None
    format: str = "chat"
    license: str | None = None
    rank: int = 0

    def as_dict(self) -> dict:
        """Plain dict (for cache keys and cards)."""
        return asdict(self)


@lru_cache(maxsize=1)
def hhh_demos() -> list[tuple[str, str]]:
    """The project's generic HHH dialogues ``[(human, assistant)]`` from ``demos.yaml``."""
    data = yaml.safe_load((resources.files("lab_tools.feedback") / "demos.yaml").read_text(encoding="utf-8"))
    return [(d["human"].strip(), d["assistant"].strip()) for d in data["dialogues"]]


def demos_version() -> str:
    """sha256[:12] of ``demos.yaml`` (part of the comparison cache key)."""
    return hashlib.sha256((resources.files("lab_tools.feedback") / "demos.yaml").read_bytes()).hexdigest()[:12]


def _resolve_model(spec: str, teacher: str, student: str) -> str:
    if spec == "teacher":
        return teacher
    if spec == "student":
        return f"transformers:{student}"
    return spec


def _ranks(rubric: list, names: list[str], errors: list[str]) -> dict[str, int]:
    """``{config name: rank}`` from a rubric ``[name | [name, ...], ...]`` (best first)."""
    if not rubric:  # no rubric: the listed order, no ties
        return {n: i for i, n in enumerate(names)}
    ranks: dict[str, int] = {}
    for i, entry in enumerate(rubric):
        for n in ([entry] if isinstance(entry, str) else list(entry)):
            if n not in names:
                errors.append(f"feedback.rubric.{i}: unknown configuration {n!r} (known: {', '.join(names)})")
            elif n in ranks:
                errors.append(f"feedback.rubric.{i}: configuration {n!r} ranked twice")
            else:
                ranks[n] = i
    for n in names:
        if n not in ranks:
            errors.append(f"feedback.rubric: configuration {n!r} is not ranked")
    if len(set(ranks.values())) < 2 and not errors:
        errors.append("feedback.rubric: needs at least two ranks (all configurations tie: no pair can be made)")
    return ranks


def resolve_configurations(fb, teacher: str, student: str) -> list[Configuration]:
    """The ranked configurations of a :class:`lab_tools.config_sections.FeedbackConfig` ``fb``: its own
    ``configurations``/``rubric`` when given, else those of ``fb.preset`` (``cpu``/``gpu``).
    ``teacher``/``student``: the specs ``teacher``/``student`` stand for. Sorted best first.

    Raises:
        ConfigError: every problem at once (unknown preset or key, bad value, rubric that names
        an unknown configuration, leaves one out, or has fewer than two ranks).
    """
    errors: list[str] = []
    if fb.configurations:
        raw, rubric = fb.configurations, fb.rubric
    elif fb.preset in PRESETS:
        raw, rubric = PRESETS[fb.preset]["configurations"], fb.rubric or PRESETS[fb.preset]["rubric"]
    else:
        raise ConfigError([f"feedback.preset: unknown preset {fb.preset!r} (known: {', '.join(PRESETS)})"])
    confs, names = [], []
    for i, c in enumerate(raw):
        where = f"feedback.configurations.{i}"
        unknown = set(c) - _KEYS
        if unknown:
            errors.append(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})")
        name, model = c.get("name"), c.get("model", "teacher")
        demos, shots, fmt = c.get("demonstrations", "none"), c.get("shots", 0), c.get("format", "chat")
        if not isinstance(name, str) or not name or name in names:
            errors.append(f"{where}.name: needs a unique non-empty name, got {name!r}")
        if demos not in DEMONSTRATIONS:
            errors.append(f"{where}.demonstrations: {demos!r} is not one of {', '.join(DEMONSTRATIONS)}")
        if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
            errors.append(f"{where}.shots: expected an integer >= 0, got {shots!r}")
        elif demos == "none" and shots:
            errors.append(f"{where}.shots: demonstrations 'none' takes 0 shots, got {shots}")
        if fmt not in FORMATS:
            errors.append(f"{where}.format: {fmt!r} is not one of {', '.join(FORMATS)}")
        spec = _resolve_model(str(model), teacher, student)
        if fmt == "raw" and not spec.startswith(("transformers:", "scripted")):
            errors.append(f"{where}.format: 'raw' needs an in-process transformers model or the scripted "
                          f"teacher, not {spec!r}")
        names.append(name)
        confs.append((name, spec, demos, shots, c.get("system"), fmt, c.get("license")))
    if len(confs) < 2:
        errors.append("feedback.configurations: at least two configurations are needed to make pairs")
    ranks = _ranks(rubric, names, errors)
    if errors:
        raise ConfigError(errors)
    out = [Configuration(n, m, d, s, sy, f, lic, ranks[n]) for n, m, d, s, sy, f, lic in confs]
    return sorted(out, key=lambda c: (c.rank, names.index(c.name)))


def demonstrations(conf: Configuration, leaf) -> list[tuple[str, str]]:
    """The ``[(human, assistant)]`` in-context examples of ``conf`` for ``leaf`` (a
    :class:`lab_tools.taxonomy.leaf.Leaf`): its first ``shots`` seed examples (knowledge leaves:
    the seed context's question/answer pairs), the HHH dialogues, or none."""
    if conf.demonstrations == "hhh":
        return hhh_demos()[:conf.shots]
    if conf.demonstrations != "leaf":
        return []
    out = []
    for s in leaf.seed_examples:
        if s.question and s.answer:
            q = f"{s.question}\n\n{s.context}" if s.context else s.question
            out.append((q, s.answer))
        for q, a in s.qna:
            if q and a:
                out.append((f"{q}\n\n{s.context}" if s.context else q, a))
    return out[:conf.shots]


def messages(conf: Configuration, leaf, prompt: str) -> list[dict]:
    """Chat messages for ``prompt`` under ``conf``: [system?, (user, assistant) * shots, user].
    Raw-format configurations send the same messages; the raw backend renders them as text."""
    msgs = [{"role": "system", "content": conf.system.strip()}] if conf.system else []
    for q, a in demonstrations(conf, leaf):
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": prompt}]


def raw_prompt(msgs: list[dict]) -> str:
    """ALMoST's vanilla-model prompt (its ``PromptedResponseGenerator.form_prompt``): a preamble
    (the system prompt), then ``Human: ...`` / ``Assistant: ...`` turns, ending ``Assistant:``."""
    parts = [m["content"].strip() for m in msgs if m["role"] == "system"]
    for m in msgs:
        if m["role"] == "user":
            parts.append(f"Human: {m['content'].strip()}")
        elif m["role"] == "assistant":
            parts.append(f"Assistant: {m['content'].strip()}")
    return "\n\n".join(parts) + "\n\nAssistant:"
