"""`lab.yaml`: one typed configuration for every stage (see DESIGN.md, Configuration).

Precedence: defaults < ``<root>/lab.yaml`` < ``--config FILE`` < ``LAB_SECTION__KEY`` environment
variables < command-line flags (applied by each command through :func:`Config.override`).
Unknown keys are errors (with a did-you-mean); all errors are collected and raised together as
:class:`ConfigError`, each naming its source: ``FILE:LINE: section.key: problem`` for a file (the
line of the key), ``$VARIABLE (section.key): problem`` for a variable, ``section.key: problem``
for a flag.

Environment variables: only the form ``LAB_<SECTION>__<KEY>`` (upper case, ``__`` between levels,
nested further with more ``__``) is a setting: ``LAB_GENERATE__SAMPLES=4`` sets
``generate.samples``, ``LAB_GENERATE__FILTERS__ENABLED=false`` sets ``generate.filters.enabled``;
values are parsed as YAML scalars. Other ``LAB_*`` variables (no ``__``: ``LAB_CACHE_DIR``,
``LAB_PROGRESS_INTERVAL``, ``LAB_USER``, the install scripts' ``LAB_TORCH``...) are not settings
and are ignored here; a misspelled section or key of the settings form is an error.

Ranges and value checks: :mod:`lab_tools.config_rules`; the section dataclasses (the meaning,
default and range of every key): :mod:`lab_tools.config_sections`.

Why not pydantic-settings (env prefix, ``__`` delimiter, ``extra="forbid"``, constraints): the
sections are plain mutable dataclasses that many modules build, mutate and pass between stages,
and the training presets reuse :func:`~lab_tools.config_rules.fill_dataclass` and
:class:`~lab_tools.config_rules.Range`, so a switch would touch all of them; its validation errors
carry no YAML file line, and its env source reads only variables whose section matches a field (a
misspelled ``LAB_GENERTE__SAMPLES`` would be silently ignored).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab_tools.config_rules import Origin, apply_setting
from lab_tools.config_sections import (
    BotConfig, DocumentsConfig, FeedbackConfig, GenerateConfig, LicensesConfig, ReleaseConfig, TrainConfig)
from lab_tools.engines import COMPUTE_TYPES, ENGINES
from lab_tools.errors import ConfigError


def default_cache_dir() -> Path:
    """The user's cache directory for lab-tools (``$LAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/lab-tools``)."""
    if os.environ.get("LAB_CACHE_DIR"):
        return Path(os.environ["LAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lab-tools"


@dataclass
class Config:
    """The whole ``lab.yaml``. ``cache_dir``: models, documents and SDG shards (default: user cache)."""
    cache_dir: str | None = None
    licenses: LicensesConfig = field(default_factory=LicensesConfig)
    documents: DocumentsConfig = field(default_factory=DocumentsConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)

    @property
    def cache_path(self) -> Path:
        """Resolved cache directory."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def override(self, dotted: str, value) -> None:
        """Set ``section.key`` to ``value`` unless ``value`` is None (a flag left unset).

        Raises:
            ConfigError: unknown key, wrong type, NaN/infinity or value out of range (the setting
            is then left as it was).
        """
        if value is None:
            return
        errors: list[str] = []
        apply_setting(self, dotted.split("."), value, (), Origin(), errors)
        if errors:
            raise ConfigError(errors)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _key_lines(node, path: tuple[str, ...], lines: dict, where: str, errors: list[str]) -> None:
    """Record the 1-based line of every mapping key below ``node``; a repeated key is an error."""
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge" or not isinstance(knode, yaml.ScalarNode):
                continue
            here, line = (*path, str(knode.value)), knode.start_mark.line + 1
            if here in lines:
                errors.append(f"{where}:{line}: {'.'.join(here)}: duplicate key (first at line {lines[here]})")
            lines[here] = line
            _key_lines(vnode, here, lines, where, errors)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _key_lines(item, path, {}, where, errors)  # keys inside list items: checked, not located


def _merge_file(cfg: Config, path: Path, errors: list[str], record: dict[str, str]) -> None:
    """Apply the settings of the YAML file ``path``; its errors name the file and the line of the key."""
    where = str(path)
    try:
        loader = _Loader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is None:
                return
            lines: dict[tuple[str, ...], int] = {}
            _key_lines(node, (), lines, where, errors)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{where}: cannot read: {exc}")
        return
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        text = " ".join(str(t) for t in (getattr(exc, "context", None), getattr(exc, "problem", None)) if t)
        errors.append(f"{where}{f':{mark.line + 1}' if mark else ''}: invalid YAML: {text or exc}")
        return
    if not isinstance(data, dict):
        errors.append(f"{where}:{node.start_mark.line + 1}: top level must be a mapping")
        return
    origin = Origin(file=where, lines=lines, record=record)
    for k, v in data.items():
        apply_setting(cfg, [str(k)], v, (), origin, errors)


def _merge_env(cfg: Config, env, errors: list[str], record: dict[str, str]) -> None:
    """Apply the ``LAB_SECTION__KEY`` variables of ``env``; other ``LAB_*`` variables are not settings."""
    for name, raw in sorted(env.items()):
        if not name.startswith("LAB_") or "__" not in name[4:]:
            continue
        parts = name[4:].lower().split("__")
        if not all(parts):
            errors.append(f"${name}: expected LAB_SECTION__KEY (upper case, '__' between levels)")
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        apply_setting(cfg, parts, value, (), Origin(var=name, record=record), errors)


def default_root() -> Path:
    """The taxonomy root used when a command is given none: ``./taxonomy`` if it exists, else ``.``."""
    return Path("taxonomy") if Path("taxonomy").is_dir() else Path(".")


def find_lab_yaml(root: str | Path) -> Path | None:
    """``lab.yaml`` in the taxonomy ``root`` or its nearest parent up to the git work tree top."""
    here = Path(root).resolve()
    for d in [here, *here.parents]:
        if (d / "lab.yaml").is_file():
            return d / "lab.yaml"
        if (d / ".git").exists():
            return None
    return None


def load_config(root: str | Path | None = None, config_file: str | Path | None = None,
                environ: dict[str, str] | None = None, provenance: dict | None = None) -> Config:
    """Load defaults < ``lab.yaml`` (see :func:`find_lab_yaml`) < ``config_file`` <
    ``LAB_SECTION__KEY`` variables of ``environ`` (default: ``os.environ``).

    ``provenance``: when given, filled with ``{"section.key": (source, where)}`` for every setting
    that is not its default: source ``lab.yaml``, ``--config`` or ``environment``, where
    ``FILE:LINE`` or ``$VARIABLE`` (the last source that set it; :mod:`lab_tools.config_show`).

    Raises:
        ConfigError: every unknown key (with a did-you-mean), wrong type, NaN/infinity, value out of
        range, duplicate key, unreadable or invalid file and misspelled ``LAB_SECTION__KEY``
        variable, all at once; file errors name the file and the key's line.
    """
    cfg = Config()
    errors: list[str] = []
    record: dict[str, str] = {}
    found = find_lab_yaml(root) if root is not None else None
    steps = [("lab.yaml", lambda: _merge_file(cfg, found, errors, record))] if found is not None else []
    if config_file is not None:
        steps.append(("--config", lambda: _merge_file(cfg, Path(config_file), errors, record)))
    steps.append(("environment", lambda: _merge_env(cfg, os.environ if environ is None else environ,
                                                    errors, record)))
    for source, merge in steps:
        before = dict(record)
        merge()
        if provenance is not None:
            provenance.update({k: (source, v) for k, v in record.items() if before.get(k) != v})
    _cross_field(cfg, errors, record)
    if errors:
        raise ConfigError(errors)
    return cfg


def _cross_field(cfg: Config, errors: list[str], record: dict[str, str]) -> None:
    """Rules between two settings (each one alone is range-checked when set); ``record``: where
    each setting was set, named in the message."""
    g = cfg.generate
    for key, allowed in (("engine", ENGINES), ("engine_compute_type", COMPUTE_TYPES)):
        if getattr(g, key) not in allowed:
            where = f" ({record['generate.' + key]})" if "generate." + key in record else ""
            errors.append(f"generate.{key}: must be one of {', '.join(allowed)}, got {getattr(g, key)!r}{where}")
    if g.teacher_license is not None and not re.fullmatch(r"[A-Za-z0-9.+\-]+( +(AND|OR|WITH) +[A-Za-z0-9.+\-]+)*",
                                                          g.teacher_license.strip()):
        where = f" ({record['generate.teacher_license']})" if "generate.teacher_license" in record else ""
        errors.append("generate.teacher_license: must be an SPDX license id or expression (e.g. Apache-2.0, "
                      f"MIT OR Apache-2.0), got {g.teacher_license!r}{where}")
    if cfg.release.dataset:
        problem = _hub_id_problem(cfg.release.dataset)
        if problem:
            where = f" ({record['release.dataset']})" if "release.dataset" in record else ""
            errors.append(f"release.dataset: must be a Hugging Face Hub dataset id (owner/name): {problem}{where}")
    if g.chunk_overlap >= g.chunk_tokens:
        keys = ("generate.chunk_overlap", "generate.chunk_tokens")
        where = "; ".join(f"{k}: {record[k]}" for k in keys if k in record)
        errors.append(f"generate.chunk_overlap: must be < generate.chunk_tokens ({g.chunk_tokens}), "
                      f"got {g.chunk_overlap}" + (f" ({where})" if where else ""))


def _hub_id_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` is not a valid Hub repository id (``huggingface_hub``'s own rule:
    :func:`huggingface_hub.utils.validate_repo_id`; an id without an owner is refused too), or None.
    huggingface_hub is imported only here, when the setting is used."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        return f"expected one '/' between owner and name, got {repo_id!r}"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        return str(exc).splitlines()[0]
    return None
