"""`lab ui`: the command that starts the local page (heavy modules imported only when it runs)."""

from __future__ import annotations

import click

from lab_tools.config import load_config
from lab_tools.taxonomy.cli import root_dir


@click.command("ui")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback prints a warning.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--teacher", default=None, metavar="SPEC",
              help="Preview teacher (default generate.teacher from lab.yaml; e.g. scripted: for a fake).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Extra lab.yaml-style settings file.")
def ui(root, port, host, open_browser, teacher, config_file):
    """Write, check and preview a leaf in the browser, on ROOT (default ./taxonomy).

    Every edit is checked by the same code as `lab taxonomy validate` and `lab taxonomy licenses`;
    Preview generates a few samples with the teacher; Save writes qna.yaml and attribution.txt
    (optionally on a new branch with a commit)."""
    from lab_tools.ui.server import serve

    path = root_dir(root)
    serve(path, load_config(path, config_file), host=host, port=port, open_browser=open_browser, teacher=teacher)
