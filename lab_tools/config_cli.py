"""`lab config init` / `lab config show`: write a commented ``lab.yaml``; print the effective
settings and where each one comes from (:mod:`lab_tools.config_show`). No torch imported here."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lab_tools.config import default_root
from lab_tools.config_show import effective_settings, parse_set, write_init, yaml_value
from lab_tools.errors import LabError

# The flags other commands take for settings (lab build / generate / train), accepted here so
# that `lab config show --teacher X` shows what `lab build --teacher X` would run with.
FLAGS = {"teacher": ("generate.teacher", str), "judge": ("generate.judge", str),
         "samples": ("generate.samples", int), "workers": ("generate.workers", int),
         "preset": ("train.preset", str), "student": ("train.student", str)}


@click.group("config")
def config():
    """Write a commented lab.yaml; show the effective settings and their sources."""


@config.command("init")
@click.argument("path", required=False, default="lab.yaml", type=click.Path())
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path, force):
    """Write PATH (default ./lab.yaml; a folder: PATH/lab.yaml) with every setting at its default
    and a one-line comment on each."""
    written = write_init(path, force=force)
    click.echo(f"wrote {written}")


def _flag_options(fn):
    for name, (key, kind) in reversed(FLAGS.items()):
        fn = click.option(f"--{name}", name, type=kind, default=None,
                          help=f"As the other commands' --{name} ({key}).")(fn)
    return fn


def _show_value(value) -> str:
    return yaml_value(value)


@config.command("show")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Extra config file applied over lab.yaml, as the other commands' --config.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="A command-line setting (VALUE read as YAML); repeatable.")
@_flag_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object: files and every setting's value and source.")
@click.option("--changed", is_flag=True, help="Only settings that are not at their default.")
def show(root, config_file, sets, as_json, changed, **flags):
    """Print every setting's effective value for taxonomy ROOT (default ./taxonomy or .) and
    where it comes from: default, lab.yaml, --config, environment (LAB_SECTION__KEY) or flag."""
    if config_file is not None and not Path(config_file).is_file():
        raise LabError("config file not found", file=str(config_file))
    given = [(FLAGS[name][0], value, f"--{name}") for name, value in flags.items()]
    given += [(key, value, f"--set {key}") for key, value in parse_set(sets)]
    result = effective_settings(Path(root) if root else default_root(), config_file, given)
    rows = {k: v for k, v in result["settings"].items() if not changed or v["source"] != "default"}
    if as_json:
        click.echo(json.dumps({"files": result["files"], "settings": rows}, indent=1, default=str))
        return
    for label, path in result["files"].items():
        click.echo(f"# {label}: {path or '(none)'}")
    width = max((len(k) for k in rows), default=0)
    for key, row in rows.items():
        where = f" {row['where']}" if row["where"] else ""
        click.echo(f"{key:<{width}}  {_show_value(row['value'])}  [{row['source']}{where}]")
