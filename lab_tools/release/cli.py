"""`lab release --run DIR [--out DIR]`: cut a release directory from a build run."""

from __future__ import annotations

import click

from lab_tools.config import load_config
from lab_tools.errors import plural
from lab_tools.release.gguf_export import GGUF_TYPES


@click.command("release")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Run directory of `lab build` (holds data/, train/, eval/, run.json).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Release directory (default: RUN/release).")
@click.option("--taxonomy", type=click.Path(exists=True, file_okay=False), default=None,
              help="Taxonomy root, when the run has no run.json.")
@click.option("--allow-untrained", is_flag=True,
              help="Release even a model that no training phase changed (the base model).")
@click.option("--gguf", "gguf_types", multiple=True, type=click.Choice(GGUF_TYPES, case_sensitive=False),
              metavar="TYPE", help="Also write model-TYPE.gguf with llama.cpp's converter (repeatable: "
              f"{', '.join(GGUF_TYPES)}) and an Ollama Modelfile for the first TYPE.")
def release(run_dir, out_dir, taxonomy, allow_untrained, gguf_types):
    """Write the selected model, a model card (README.md) with full provenance, release.json and
    SHA256SUMS (verify with `sha256sum -c SHA256SUMS`); with --gguf also GGUF files and a Modelfile
    (`ollama create NAME -f Modelfile`)."""
    from lab_tools.release.release import make_release

    cfg = load_config(taxonomy) if taxonomy else None
    result = make_release(run_dir, out_dir, taxonomy=taxonomy, cfg=cfg, allow_untrained=allow_untrained,
                          gguf=gguf_types)
    click.echo(f"release written to {result.out_dir} "
               f"({plural(len(result.info['leaves']), 'leaf')}, samples {result.info['samples']})")
    for f in (result.info.get("gguf") or {}).get("files", []):
        click.echo(f"  {f['file']} ({f['bytes'] / 2**20:.1f} MiB)")
