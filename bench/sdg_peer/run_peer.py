"""Run instructlab-sdg's own ``generate_data`` (the entry point ``ilab data generate`` calls) on a
taxonomy against an OpenAI-compatible server, and print one JSON line with what it measured.

Runs inside the peer venv made by ``bench/sdg_throughput.py`` (instructlab-sdg and the packages its
skills path imports; see ``requirements.txt`` beside this file). Not imported by lab-tools.

What is set from outside, through instructlab-sdg's own configuration points (none of its code is
replaced):

- ``pipeline``: a copy of the packaged pipeline (``simple`` by default) written to a directory and
  passed as ``generate_data(pipeline=DIR)``, a documented option. The copy differs in two keys per
  LLMBlock only: ``config_path`` made absolute (it is relative to the packaged YAML), and, when
  given, ``gen_kwargs.max_tokens`` capped (``--max-tokens``, the bench passes lab-tools' own cap
  so that both tools may generate the same number of tokens per request) and ``model_prompt``
  set to the served model's own chat template (``--chat-template``; instructlab-sdg sends raw
  prompts to ``/v1/completions`` wrapped in a model family's template, and it knows no family for
  SmolLM2: the server applies that same template to lab-tools' chat requests).
- ``client.server_supports_batched = False``: the attribute instructlab-sdg reads before probing
  the server (llmblock.server_supports_batched). ``transformers serve`` answers the probe (a list
  of prompts with n=3) with HTTP 400 "prompt must be a string", which instructlab-sdg does not
  catch (it only expects a 500), and it ignores ``n``; so the answer is "no", as the probe would
  conclude against a server that failed it with 500. instructlab-sdg then sends one prompt per
  request, n times, which is what it does against llama.cpp.
- ``batch_size=1, num_cpus=WORKERS``: instructlab-sdg's thread pool over seed examples, so it has
  up to WORKERS requests in flight, as lab-tools does with its workers.

Requests are counted by an httpx event hook on the client's transport (every HTTP request sent,
the probe and retries included). CPU time is this process's user+system time plus that of any
child process it waited for, over the ``generate_data`` call only (imports excluded, as on the
lab-tools side).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from importlib import resources
from pathlib import Path


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def write_pipeline(name: str, dest: Path, max_tokens: int | None, chat_template: str | None) -> Path:
    import yaml
    from instructlab.sdg.pipeline import (
        FULL_PIPELINES_PACKAGE,
        SIMPLE_PIPELINES_PACKAGE,
    )

    pkg = {"simple": SIMPLE_PIPELINES_PACKAGE, "full": FULL_PIPELINES_PACKAGE}[name]
    src = resources.files(pkg)
    dest.mkdir(parents=True, exist_ok=True)
    for fname in ("knowledge.yaml", "freeform_skills.yaml", "grounded_skills.yaml"):
        with resources.as_file(src.joinpath(fname)) as path:
            content = yaml.safe_load(Path(path).read_text())
            for block in content["blocks"]:
                cfg = block.get("config", {})
                if "config_path" in cfg:
                    cfg["config_path"] = str((Path(path).parent / cfg["config_path"]).resolve())
                if block.get("type") in ("LLMBlock", "ConditionalLLMBlock", "LLMMessagesBlock"):
                    if max_tokens is not None:
                        gk = cfg.setdefault("gen_kwargs", {})
                        gk["max_tokens"] = min(int(gk.get("max_tokens", max_tokens)), max_tokens)
                    if chat_template is not None and block["type"] == "LLMBlock" and "model_prompt" not in cfg:
                        cfg["model_prompt"] = chat_template
        (dest / fname).write_text(yaml.safe_dump(content, sort_keys=False))
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--taxonomy", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", type=int, required=True, help="num_instructions_to_generate (per seed example)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pipeline", default="simple", choices=["simple", "full"])
    ap.add_argument("--max-tokens", type=int)
    ap.add_argument("--chat-template", type=Path)
    args = ap.parse_args()

    import httpx
    import openai
    from instructlab.sdg.generate_data import generate_data

    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    template = args.chat_template.read_text() if args.chat_template else None
    pipe_dir = write_pipeline(args.pipeline, out / "pipeline", args.max_tokens, template)

    sent = {"n": 0}

    def count(_request):
        sent["n"] += 1

    http = httpx.Client(event_hooks={"request": [count]}, timeout=600)
    client = openai.OpenAI(base_url=args.url, api_key="none", http_client=http)
    client.server_supports_batched = False

    cpu0, t0 = _cpu(), time.monotonic()
    generate_data(client=client, logger=logging.getLogger("instructlab-sdg"), model_name=args.model,
                  num_cpus=args.workers, batch_size=1, output_dir=str(out / "data"),
                  taxonomy=args.taxonomy, taxonomy_base="empty", pipeline=str(pipe_dir),
                  num_instructions_to_generate=args.scale, console_output=False,
                  use_legacy_pretraining_format=False)
    wall, cpu = time.monotonic() - t0, _cpu() - cpu0

    def lines(pattern: str) -> int:
        return sum(1 for p in (out / "data").glob(pattern) for line in p.open() if line.strip())

    generated = lines("generated_*/*.jsonl")  # samples that came out of the skills pipelines
    # The mixed skills training file is *upsampled*: its recipe draws sampling_size (30) rows per
    # leaf with replacement, so 11 generated samples became 60 lines in one run. Accepted samples
    # are its distinct (user, assistant) pairs; the pairs themselves go back to the bench, which
    # applies lab-tools' rule-based filters to them for the like-for-like column.
    pairs: dict[tuple[str, str], None] = {}
    for path in (out / "data").glob("skills_train_msgs_*.jsonl"):
        for line in path.open():
            if line.strip():
                msgs = json.loads(line)["messages"]
                user = next((m["content"] for m in msgs if m["role"] == "user"), "")
                answer = next((m["content"] for m in msgs if m["role"] == "assistant"), "")
                pairs[(user, answer)] = None
    print(json.dumps({"tool": "instructlab-sdg", "wall_s": wall, "accepted": len(pairs), "generated": generated,
                      "train_lines": lines("skills_train_msgs_*.jsonl"),
                      "per_min": len(pairs) / wall * 60 if wall else 0.0, "requests": sent["n"], "cpu_s": cpu,
                      "overhead": cpu / wall if wall else 0.0, "scale": args.scale,
                      "pipeline": args.pipeline, "pairs": list(pairs)}))


if __name__ == "__main__":
    main()
