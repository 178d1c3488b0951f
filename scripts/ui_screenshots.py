"""Take the `lab ui` screenshots shown in CONTRIBUTING.md ("Writing a leaf"): one per kind,
docs/ui-compositional.png, docs/ui-foundational.png, docs/ui-knowledge.png.

Serves this repository's taxonomy on a free loopback port (scripted preview teacher, nothing is
written) and drives Debian's headless chromium through Playwright:

    nice .venv/bin/python scripts/ui_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    """Parse ``--out`` and write the screenshots there (prints each file)."""
    from lab_tools.config import load_config
    from lab_tools.ui.server import ServerThread, create_app
    from lab_tools.ui.shots import take_screenshots

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs"), help="folder for ui-*.png (default docs/)")
    args = parser.parse_args()
    os.chdir(REPO)  # the page shows the root as given: "taxonomy", not this machine's path
    root = Path("taxonomy")
    app = create_app(root, load_config(root), teacher="scripted:")
    with ServerThread(app) as srv:
        for path in take_screenshots(srv.url, args.out):
            print(path)


if __name__ == "__main__":
    main()
