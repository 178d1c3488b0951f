"""The `lab` command: a thin click root that loads each subcommand only when it is invoked.

Each stage owns its commands in ``lab_tools/<stage>/cli.py`` (or a module named below); this file
only maps names to import paths, so `lab --help` imports neither torch nor transformers.
LabError from any command becomes a one-line message and its exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from lab_tools.errors import LabError
from lab_tools.progress import silence_library_bars

# name -> (module, attribute, one-line help shown by `lab --help` without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "taxonomy": ("lab_tools.taxonomy.cli", "taxonomy", "Validate, diff and license-check a taxonomy."),
    "generate": ("lab_tools.sdg.cli", "generate", "Synthetic data generation for changed leaves (LAB 3.2)."),
    "train": ("lab_tools.train.cli", "train", "Phased training KT/1 -> KT/2 -> ST (LAB 3.3)."),
    "evaluate": ("lab_tools.eval.cli", "evaluate", "Knowledge and judge scores, base vs trained."),
    "release": ("lab_tools.release.cli", "release", "Cut a release directory with a model card."),
    "build": ("lab_tools.build", "build", "The main job: validate -> generate -> train -> evaluate -> release."),
    "chat": ("lab_tools.chat", "chat", "Chat with a model (or an OpenAI-compatible endpoint) in the terminal."),
    "serve": ("lab_tools.serve_cli", "serve", "Serve a release as an OpenAI-compatible endpoint on 127.0.0.1."),
    "bot": ("lab_tools.bot.cli", "bot", "The contribution bot (PR preview comments)."),
    "ui": ("lab_tools.ui.cli", "ui", "Write, check and preview a leaf in the browser (local page)."),
    "config": ("lab_tools.config_cli", "config", "Write a commented lab.yaml; show the effective settings and their sources."),
    "runs": ("lab_tools.runs", "runs", "List build runs; show one run's stages, fingerprints, times and release."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lab-tools")
def cli():
    """lab-tools: taxonomy -> synthetic data -> phased training -> release (LAB, arXiv 2403.01081)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lab` console script: runs the CLI, mapping LabError to its exit code
    and an OSError about a named file (an unwritable ``--out``, a full disk) to ``error: PATH:
    reason`` with exit code 1, never a traceback.

    When stderr is not a terminal (CI), the libraries' own progress bars are turned off before
    any of them is imported (:func:`lab_tools.progress.silence_library_bars`; ``--quiet`` does
    the same on a terminal); our own plain progress lines stay."""
    silence_library_bars()
    try:
        rc = cli.main(args=argv, standalone_mode=False)
    except LabError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as err:  # a path we cannot read or write (--out on a read-only disk, a full disk)
        if err.filename is None:
            raise  # not about a file the user named: a bug, keep the traceback
        where = err.filename + (f" -> {err.filename2}" if err.filename2 else "")
        click.echo(f"error: {where}: {err.strerror or err}", err=True)
        sys.exit(1)
    # standalone_mode=False hands back ctx.exit(N) codes instead of exiting: honour them.
    if isinstance(rc, int) and rc:
        sys.exit(rc)
