"""Run the real bot (`lab bot preview`, as a subprocess) on this repository's own taxonomy against
the fake GitHub REST API of the tests, and print the comment it posted.

The pull request is simulated in a clone: its ``main`` is this repository's HEAD without the
given leaves, its ``pr`` branch is HEAD (so the PR adds exactly those leaves).

    .venv/bin/python tests/bot/fake_github_demo.py --teacher transformers:embedded --samples 1 \\
        --fresh-cache compositional_skills/writing/freeform/poetry/haiku

Prints the exact command that was run, the API calls the bot made, the statuses, and the comment
(also written to ``--output``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_httpserver import HTTPServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import OWNER_REPO, FakeGitHub  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("leaves", nargs="+", help="leaf paths under taxonomy/ that the simulated PR adds")
    ap.add_argument("--teacher", default="scripted:")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--output", default=None, help="write the comment body here")
    ap.add_argument("--fresh-cache", action="store_true",
                    help="empty SDG cache (models still come from the user cache), so nothing is reused")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="lab-bot-demo-") as tmp:
        clone = Path(tmp) / "taxonomy-repo"
        git(REPO, "clone", "-q", "--no-hardlinks", str(REPO), str(clone))
        git(clone, "remote", "remove", "origin")  # the PR's base is this clone's main, not ours
        git(clone, "config", "user.email", "demo@example.org")
        git(clone, "config", "user.name", "demo")
        paths = [f"taxonomy/{leaf}" for leaf in args.leaves]
        git(clone, "checkout", "-q", "-B", "main")
        git(clone, "rm", "-q", "-r", *paths)
        git(clone, "commit", "-q", "-m", "base without the PR's leaves")
        git(clone, "checkout", "-q", "-B", "pr")
        git(clone, "checkout", "HEAD~1", "--", *paths)
        git(clone, "commit", "-q", "-m", "add the leaves")

        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = HTTPServer()
        server.start()
        fake = FakeGitHub(base=server.url_for("").rstrip("/"), head_sha=git(clone, "rev-parse", "HEAD"))
        import re

        server.expect_request(re.compile(".*")).respond_with_handler(fake.handle)
        env = {**os.environ, "GITHUB_API_URL": fake.base, "GITHUB_TOKEN": "demo-token"}
        if args.fresh_cache:
            from lab_tools.config import default_cache_dir

            cache = Path(tmp) / "cache"
            cache.mkdir()
            (cache / "models").symlink_to(default_cache_dir() / "models", target_is_directory=True)
            env["LAB_CACHE_DIR"] = str(cache)
        cmd = [str(REPO / ".venv" / "bin" / "lab"), "bot", "preview", "--repo", OWNER_REPO,
               "--pr", str(fake.pr_number), "--taxonomy", str(clone / "taxonomy"),
               "--config", str(REPO / "lab.yaml"), "--teacher", args.teacher, "--samples", str(args.samples)]
        shown = " ".join(shlex.quote(c) for c in cmd).replace(str(REPO) + "/", "").replace(str(clone), "$PR_CHECKOUT")
        print(f"$ {shown}", file=sys.stderr)
        t0 = time.monotonic()
        rc = subprocess.run(cmd, env=env).returncode
        print(f"exit code {rc} after {time.monotonic() - t0:.1f} s", file=sys.stderr)
        server.stop()

    print("API calls: " + ", ".join(f"{m} {p}" for m, p in fake.calls), file=sys.stderr)
    print("statuses: " + ", ".join(f"{p['state']} ({p['description']})" for _, p in fake.statuses), file=sys.stderr)
    body = next(iter(fake.comments.values()))["body"]
    if args.output:
        Path(args.output).write_text(body + "\n", encoding="utf-8")
    print(body)
    return rc


if __name__ == "__main__":
    sys.exit(main())
