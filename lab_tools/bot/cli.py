"""`lab bot`: the contribution bot's commands (no torch imported here).

``lab bot preview`` runs on every push to a pull request; ``lab bot command`` answers ``/lab ...``
comments. Both take their settings from ``--config`` when given (the workflow passes the base
branch's ``lab.yaml``) and then ignore any ``lab.yaml`` inside the pull request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from lab_tools.bot.commands import handle_comment, read_event
from lab_tools.bot.github import GitHubClient, run_url
from lab_tools.bot.preview import run_preview
from lab_tools.config import default_root, load_config
from lab_tools.errors import UsageError, plural


def _config(root: Path, config_file: str | None, samples: int | None, teacher: str | None):
    # with a trusted --config, the PR's own lab.yaml (found from root) is not read at all
    cfg = load_config(None if config_file else root, config_file)
    cfg.override("bot.samples", samples)
    cfg.override("generate.teacher", teacher)
    return cfg


def _root(taxonomy: str | None) -> Path:
    root = Path(taxonomy) if taxonomy else default_root()
    if not root.is_dir():
        raise UsageError(f"taxonomy root {root} is not a directory")
    return root


def _client(repo: str, cfg):
    return GitHubClient(repo, bot_login=cfg.bot.login)


_TAXONOMY = click.option("--taxonomy", type=click.Path(file_okay=False), default=None,
                         help="Taxonomy root of the checked-out PR head (default ./taxonomy).")
_BASE = click.option("--base", metavar="REF", default=None,
                     help="Ref to diff against (default origin/<PR base>, else <PR base>).")
_SAMPLES = click.option("--samples", type=int, default=None, help="Samples per leaf (default bot.samples).")
_CONFIG = click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
                       help="Trusted lab.yaml (the PR's own lab.yaml is then ignored).")
_TEACHER = click.option("--teacher", default=None, help="Teacher spec overriding generate.teacher.")
_OUT = click.option("--out", type=click.Path(file_okay=False), default=None,
                    help="Keep the generated datasets here (default: a temporary directory).")
_OUTPUT = click.option("--output", type=click.Path(dir_okay=False), default=None,
                       help="Also write the comment body to this file.")


@click.group("bot")
def bot():
    """The contribution bot: one sticky preview comment and a `lab/preview` status per PR.

    Uses GITHUB_TOKEN and GITHUB_API_URL from the environment, as GitHub Actions sets them."""


def _run_options(f):
    """The options every bot command shares (taxonomy, base, samples, config, teacher, out)."""
    for option in reversed((_TAXONOMY, _BASE, _SAMPLES, _CONFIG, _TEACHER, _OUT)):
        f = option(f)
    return f


@bot.command("preview")
@click.option("--repo", default=lambda: os.environ.get("GITHUB_REPOSITORY"), metavar="OWNER/NAME",
              help="Repository (default $GITHUB_REPOSITORY).")
@click.option("--pr", "pr", type=int, required=True, help="Pull request number.")
@_run_options
@_OUTPUT
@click.option("--validate-only", is_flag=True, help="Checks only, no generation.")
@click.option("--dry-run", is_flag=True, help="Print the comment instead of talking to GitHub.")
def preview(repo, pr, taxonomy, base, samples, config_file, teacher, out, output, validate_only, dry_run):
    """Diff, validate and license-check the PR's changed leaves, generate a few samples for each,
    then write the one sticky comment and the commit status. Exits 1 when the preview failed."""
    root = _root(taxonomy)
    cfg = _config(root, config_file, samples, teacher)
    if not dry_run and not repo:
        raise UsageError("--repo is required (or set GITHUB_REPOSITORY)")
    gh = None if dry_run else _client(repo, cfg)
    result, body = run_preview(gh, pr, root, cfg, base=base, mode="validate" if validate_only else "preview",
                               out_dir=out, run_url=run_url())
    if output:
        Path(output).write_text(body + "\n", encoding="utf-8")
    if dry_run:
        click.echo(body)
    state = "ok" if result.ok else ("failed: " + result.failure if result.failure else "errors found")
    click.echo(f"lab bot: PR #{pr}: {plural(len(result.leaves), 'changed leaf')}, {state} ({result.seconds:.1f} s)", err=True)
    if not result.ok:
        raise click.exceptions.Exit(1)


@bot.command("command")
@click.option("--event", "event_path", type=click.Path(dir_okay=False, exists=True),
              default=lambda: os.environ.get("GITHUB_EVENT_PATH"),
              help="issue_comment event JSON (default $GITHUB_EVENT_PATH).")
@_run_options
def command(event_path, taxonomy, base, samples, config_file, teacher, out):
    """Answer a `/lab preview` or `/lab validate` comment (write permission required)."""
    if not event_path:
        raise UsageError("--event is required (or set GITHUB_EVENT_PATH)")
    try:
        event = read_event(json.loads(Path(event_path).read_text(encoding="utf-8")))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{event_path}: not an issue_comment event ({exc})") from exc
    root = _root(taxonomy)
    cfg = _config(root, config_file, samples, teacher)
    outcome = handle_comment(_client(event.repo, cfg), event, root, cfg, base=base, out_dir=out,
                             run_url=run_url())
    click.echo(f"lab bot: comment by {event.user} on #{event.pr}: {outcome}", err=True)
