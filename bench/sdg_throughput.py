"""SDG throughput: `lab generate` vs `instructlab-sdg` against the same local OpenAI-compatible server.

Starts `transformers serve` on a free loopback port with the chosen model, runs our pipeline
(openai backend) on the same leaves and sample counts as the peer, and prints for each tool:
wall time, accepted samples per minute, requests sent, and the tool's own CPU time (the server
runs in another process, so this is the tool's overhead); then the ratio ours/peer.

The peer (instructlab-sdg, from PyPI) is installed in its own venv (``--peer-venv``) if absent.
When it cannot be installed or run offline here, the script says exactly why and still measures
our side.

    .venv/bin/python bench/sdg_throughput.py                 # embedded model, 3 corpus leaves, 2 samples
    .venv/bin/python bench/sdg_throughput.py --model tiny    # tiny random model: measures overhead only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus" / "instructlab-taxonomy" / "cases"
# three valid skills leaves of the public InstructLab taxonomy: foundational, freeform, grounded
CORPUS_CASES = ["009d8d285aa5", "0f6d52c3e559", "6479ce09f413"]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("transformers")
    port = _free_port()
    proc = subprocess.Popen([str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], env=dict(os.environ, HF_HUB_OFFLINE="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"transformers serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("transformers serve did not start in 180 s")


def build_taxonomy(dest: Path) -> Path:
    for case in CORPUS_CASES:
        shutil.copytree(CORPUS / case, dest, dirs_exist_ok=True)
    return dest


def run_ours(root: Path, url: str, model: str, samples: int, workers: int, work: Path) -> dict:
    from lab_tools.config import Config
    from lab_tools.sdg.backends import OpenAITeacher
    from lab_tools.sdg.pipeline import generate_dataset

    cfg = Config(cache_dir=str(work / "cache"))
    cfg.generate.samples, cfg.generate.workers = samples, workers
    cfg.generate.pair_threshold = 2
    teacher = OpenAITeacher(url, model, workers=workers)
    cpu0, t0 = _cpu(), time.monotonic()
    rep = generate_dataset(root, None, work / "out", cfg, teacher=teacher, judge=teacher, progress=False)
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    kept = sum(rep.phases.values())
    return {"tool": "lab generate", "wall_s": wall, "accepted": kept, "per_min": kept / wall * 60,
            "requests": teacher.requests_sent, "cpu_s": cpu, "overhead": cpu / wall}


PEER_SCRIPT = r"""
import json, logging, resource, sys, time
from pathlib import Path
import openai
from instructlab.sdg.generate_data import generate_data
url, model, taxonomy, out, samples = sys.argv[1:6]
calls = {"n": 0}
client = openai.OpenAI(base_url=url, api_key="none")
orig = client.chat.completions.create
def counted(*a, **k):
    calls["n"] += 1
    return orig(*a, **k)
client.chat.completions.create = counted
orig_c = client.completions.create
def counted_c(*a, **k):
    calls["n"] += 1
    return orig_c(*a, **k)
client.completions.create = counted_c
t0 = time.monotonic()
generate_data(client=client, logger=logging.getLogger("sdg"), model_family="mixtral", model_name=model,
              num_cpus=1, output_dir=out, taxonomy=taxonomy, taxonomy_base="empty", pipeline="simple",
              num_instructions_to_generate=int(samples), system_prompt="You are a helpful assistant.")
wall = time.monotonic() - t0
kept = sum(1 for p in Path(out).rglob("*.jsonl") if "messages" in p.name or "train" in p.name
           for _ in p.open())
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"tool": "instructlab-sdg", "wall_s": wall, "accepted": kept, "per_min": kept / wall * 60,
                  "requests": calls["n"], "cpu_s": r.ru_utime + r.ru_stime,
                  "overhead": (r.ru_utime + r.ru_stime) / wall}))
"""


def _resolve_peer(py: Path) -> tuple[list[str], str]:
    """Ask pip what installing instructlab-sdg would pull in, without installing anything."""
    report = py.parent.parent / "resolve-report.json"
    proc = subprocess.run([str(py), "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                           "--report", str(report), "instructlab-sdg"], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        return [], "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
    data = json.loads(report.read_text())
    return [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in data["install"]], ""


def ensure_peer(venv: Path, install: bool, allow_torch: bool) -> tuple[Path | None, str]:
    """The peer venv's python, or None with the exact reason it is not usable."""
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import instructlab.sdg"], capture_output=True).returncode == 0:
        return py, ""
    if not install:
        return None, f"instructlab-sdg is not installed in {venv} and --no-install was given"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wanted, err = _resolve_peer(py)
    if err:
        return None, f"pip could not resolve instructlab-sdg: {err}"
    heavy = [w for w in wanted if w.split("==")[0].lower() in ("torch", "torchvision", "triton", "tesserocr")
             or w.lower().startswith("nvidia-")]
    if heavy and not allow_torch:
        tess = subprocess.run(["pkg-config", "--exists", "tesseract"]).returncode == 0 if shutil.which("pkg-config") else False
        return None, (f"installing instructlab-sdg would pull {len(wanted)} packages, among them "
                      f"{', '.join(heavy)} (through docling[tesserocr]): a second, CUDA build of torch "
                      "(several GB) that this project never installs by pip, and tesserocr, an sdist "
                      "that compiles against the tesseract C++ library "
                      f"({'present' if tess else 'absent here: no tesseract in pkg-config'}). "
                      "Rerun with --allow-torch-install on a machine where that is acceptable.")
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "instructlab-sdg"],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return None, f"pip install instructlab-sdg failed in {venv}:\n{tail}"
    return py, ""


def run_peer(py: Path, root: Path, url: str, model: str, samples: int, work: Path) -> dict | str:
    script = work / "peer.py"
    script.write_text(PEER_SCRIPT)
    proc = subprocess.run([str(py), str(script), url, model, str(root), str(work / "peer-out"), str(samples)],
                          capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        return "instructlab-sdg failed:\n" + "\n".join(proc.stderr.strip().splitlines()[-15:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded", help="embedded, tiny, or a local HF model directory")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--workers", type=int, default=4)
    from lab_tools.config import default_cache_dir

    ap.add_argument("--peer-venv", type=Path, default=default_cache_dir() / "bench" / "instructlab-sdg-venv")
    ap.add_argument("--no-install", action="store_true", help="do not try to install the peer")
    ap.add_argument("--allow-torch-install", action="store_true",
                    help="let the peer's install pull its own torch/CUDA wheels into its venv")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sdg-bench-"))
    if args.model == "tiny":
        from lab_tools.tiny import make_tiny_model

        model_dir = make_tiny_model(work / "tiny")
    else:
        from lab_tools.models import resolve_model

        model_dir = resolve_model(args.model)
    root = build_taxonomy(work / "taxonomy")
    server, url = start_server(model_dir)
    try:
        rows = [run_ours(root, url, str(model_dir), args.samples, args.workers, work / "ours")]
        peer_py, why = ensure_peer(args.peer_venv, not args.no_install, args.allow_torch_install)
        peer = run_peer(peer_py, root, url, str(model_dir), args.samples, work / "peer") if peer_py else why
        if isinstance(peer, dict):
            rows.append(peer)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"model {model_dir.name}, {len(CORPUS_CASES)} corpus leaves, {args.samples} samples/leaf, server {url}")
    print(f"{'tool':<18}{'wall s':>9}{'accepted':>10}{'acc/min':>9}{'requests':>10}{'cpu s':>8}{'overhead':>10}")
    for r in rows:
        print(f"{r['tool']:<18}{r['wall_s']:>9.1f}{r['accepted']:>10}{r['per_min']:>9.2f}{r['requests']:>10}"
              f"{r['cpu_s']:>8.1f}{r['overhead']:>9.1%}")
    if isinstance(peer, dict) and peer["per_min"] > 0:
        print(f"ratio accepted/min ours/peer: {rows[0]['per_min'] / peer['per_min']:.2f}x")
    elif not isinstance(peer, dict):
        print(f"peer not measured: {peer}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
