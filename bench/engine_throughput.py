"""Engine throughput: the build's generation and scoring workloads on the embedded model with
CTranslate2 and with transformers (the reference), same run, same prompts (issue 26).

Workloads (sizes from ``lab.yaml`` and the build's caps; the prompts are chat prompts built from
the taxonomy's seed questions, cycled to fill a batch):

- ``sdg answers``: sampled (T ``generate.temperature``, top-k 50, top-p 0.95), at most
  ``generate.answer_tokens`` new tokens, ``generate.batch_size`` prompts per call;
- ``comparisons``: the comparisons stage's own leaf-3shot prompts (system prompt, 3 seed
  examples of the leaf, a seed question: :func:`lab_tools.feedback.rubric.messages`, 150-800
  tokens), sampled, ``feedback.max_new_tokens``, ``feedback.batch_size`` prompts per call (self-play
  asks the same way); its long prompts are where CTranslate2 is weakest (it prefills a batch only
  to its shortest prompt);
- ``eval answers``: greedy, the build's ``EVAL_CAPS["max_new_tokens"]``, 16 prompts, 16 per batch
  on both engines (:data:`lab_tools.engines.ct2.ANSWER_BATCH`: the build's batch on CTranslate2;
  transformers at the same batch, its best here);
- ``chat``: one sequence, greedy, 128 new tokens (``lab chat``, the bot's single request);
- ``mc scoring``: the log-likelihood of seed answers given their question
  (:func:`lab_tools.eval.scoring.mc_accuracy`: MC, reference log-likelihood), 8 per batch;
- ``static hhh``: next-token A/B probabilities of Static HHH pairs, both orders
  (:func:`lab_tools.eval.preference.ab_preferences`), 8 per batch (``ALIGNMENT_CAPS``).

Each workload runs ``--repeats`` timed times per engine (one warm-up call first, not timed), the
engines taking turns within each repeat, so that a change in the machine's load hits both alike.
Generation tokens/s counts generated tokens; scoring tokens/s counts the tokens scored. The
machine's bound for batched decoding is its measured float32 matmul rate (numpy, 1024x1024
sgemm) over 2 FLOPs per parameter per token (about 550 tok/s for 135M parameters at 149 GFLOP/s on
2 AVX2 cores); each engine's figure is given as a fraction of it.

Run: ``.venv/bin/python bench/engine_throughput.py [--repeats 5] [--compute-type int8]
[--threads 0] [--out bench/results/engine-cpu.md]``; ``--quick`` shrinks every batch to 8 for
a first look. Writes the table as markdown (with the command, machine and settings).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def matmul_gflops(tries: int = 10) -> float:
    """float32 GEMM rate of this machine (numpy/BLAS, 1024x1024x1024, all cores), GFLOP/s: the
    best of ``tries`` timed products (the machine's peak, not its share under load)."""
    import numpy as np

    a = np.random.rand(1024, 1024).astype(np.float32)
    b = np.random.rand(1024, 1024).astype(np.float32)
    a @ b
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 1024 ** 3 / best / 1e9


def seed_questions(root: Path) -> list[str]:
    """Every seed question of the taxonomy (skills questions, knowledge Q&A questions), in order."""
    from lab_tools.taxonomy.leaf import iter_leaf_paths, load_leaf

    out = []
    for p in iter_leaf_paths(root):
        for ex in load_leaf(root, p).seed_examples:
            out += [ex.question] if ex.question else [q for q, _ in ex.qna]
    return [q for q in out if q]


def seed_pairs(root: Path) -> list[tuple[str, str]]:
    """(question, answer) of every seed example (the MC / reference scoring items' material)."""
    from lab_tools.taxonomy.leaf import iter_leaf_paths, load_leaf

    out = []
    for p in iter_leaf_paths(root):
        for ex in load_leaf(root, p).seed_examples:
            out += [(ex.question, ex.answer)] if ex.question and ex.answer else list(ex.qna)
    return out


def timed(fn, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` (after one untimed warm-up call)."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compute-type", default="int8", choices=["int8", "int8_float32", "float32"])
    ap.add_argument("--threads", type=int, default=0, help="ctranslate2 intra_threads (0 = all CPUs)")
    ap.add_argument("--quick", action="store_true", help="batches of 8 (a first look, not the figures)")
    ap.add_argument("--only", default="", help="comma-separated workload names to run (default all)")
    ap.add_argument("--gflops", type=float, default=0.0,
                    help="the machine's float32 GEMM rate (GFLOP/s) for the bound; 0 = measure it")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "engine-cpu.md"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from importlib import metadata

    import torch

    from lab_tools.config_sections import ALIGNMENT_CAPS, EVAL_CAPS
    from lab_tools.config import load_config
    from lab_tools.engines import cpu_threads
    from lab_tools.engines.ct2 import ANSWER_BATCH
    from lab_tools.eval.preference import _prompt_text  # the prompts ab_preferences builds, to count tokens
    from lab_tools.eval.preference import ab_preferences, load_static_hhh
    from lab_tools.eval.scoring import mc_accuracy
    from lab_tools.feedback.evaluate import hhh_default_path
    from lab_tools.sdg.backends import ChatRequest, make_teacher

    threads = cpu_threads(args.threads)
    torch.set_num_threads(threads)
    cfg = load_config(REPO / "taxonomy")
    g, fb = cfg.generate, cfg.feedback
    questions = seed_questions(REPO / "taxonomy")
    pairs = seed_pairs(REPO / "taxonomy")
    cap = 8 if args.quick else None

    def prompts(n):
        return [[{"role": "user", "content": questions[i % len(questions)]}] for i in range(n)]

    def leaf_3shot(n):
        """The comparisons stage's best-ranked configuration's chat messages for seed questions."""
        from lab_tools.feedback.rubric import messages, resolve_configurations
        from lab_tools.taxonomy.leaf import iter_leaf_paths, load_leaf

        conf = resolve_configurations(fb, g.teacher, cfg.train.student)[0]
        leaves = [load_leaf(REPO / "taxonomy", p) for p in iter_leaf_paths(REPO / "taxonomy")]
        out = [messages(conf, leaf, q) for leaf in leaves for ex in leaf.seed_examples
               for q in ([ex.question] if ex.question else [q for q, _ in ex.qna]) if q]
        return [out[i % len(out)] for i in range(n)]

    gen_work = [  # name, messages of n prompts, max new tokens, temperature, batch size
        ("sdg answers", prompts(cap or g.batch_size), g.answer_tokens, g.temperature, cap or g.batch_size),
        ("comparisons", leaf_3shot(cap or fb.batch_size), fb.max_new_tokens, fb.temperature, cap or fb.batch_size),
        ("eval answers", prompts(ANSWER_BATCH), EVAL_CAPS["max_new_tokens"], 0.0, ANSWER_BATCH),
        ("chat", prompts(1), 128, 0.0, 1),
    ]
    mc_items = [{"question": q, "choices": [a, pairs[(i + 1) % len(pairs)][1]], "answer": 0}
                for i, (q, a) in enumerate(pairs[:cap or 16])]
    hhh = load_static_hhh(hhh_default_path())[:cap or ALIGNMENT_CAPS["max_prompts"]]
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    engines = {"ctranslate2": dict(engine="ctranslate2", compute_type=args.compute_type, engine_threads=threads),
               "transformers": dict(engine="transformers")}
    rows: dict[str, dict[str, tuple[float, float, int]]] = {}  # workload -> engine -> (tok/s, sd, n)
    teachers = {}
    for ename, opts in engines.items():
        t0 = time.perf_counter()
        teachers[ename] = make_teacher("transformers:embedded", cfg.cache_path, batch_size=64, **opts)
        print(f"[{ename}] loaded in {time.perf_counter() - t0:.1f} s: {teachers[ename].identity}", flush=True)

    def measure(name: str, calls: dict) -> None:
        """Time ``calls`` (engine -> fn returning tokens) ``--repeats`` times, the engines taking
        turns within each repeat (so a change in the machine's load hits both alike)."""
        rates: dict[str, list[float]] = {e: [] for e in calls}
        for fn in calls.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for e, fn in calls.items():
                start = time.perf_counter()
                ntok = fn()
                rates[e].append(ntok / (time.perf_counter() - start))
        rows[name] = {e: (statistics.mean(r), statistics.pstdev(r), len(r)) for e, r in rates.items()}
        print(f"  {name}: " + ", ".join(f"{e} {v[0]:.1f} tok/s" for e, v in rows[name].items()), flush=True)

    def gen_call(teacher, reqs, bs):
        def run() -> int:
            teacher.batch_size = bs
            out = teacher.generate(reqs)
            assert not any(c.error for c in out), [c.error for c in out if c.error][:1]
            return sum(c.completion_tokens for c in out)
        return run

    for name, msgs, max_tokens, temp, bs in gen_work:
        if only and name not in only:
            continue
        reqs = [ChatRequest(m, max_tokens=max_tokens, temperature=temp, seed=i) for i, m in enumerate(msgs)]
        measure(name, {e: gen_call(t, reqs, bs) for e, t in teachers.items()})
    # the scoring workloads on the same loaded models: CT2Model / the PyTorch model
    scorers = {e: (getattr(t, "engine", None) or t.model, t.tok) for e, t in teachers.items()}
    tok = teachers["transformers"].tok
    mc_tokens = sum(len(tok(tok.apply_chat_template([{"role": "user", "content": it["question"]}], tokenize=False,
                                                      add_generation_prompt=True) + c,
                            add_special_tokens=False)["input_ids"]) for it in mc_items for c in it["choices"])
    hhh_tokens = sum(len(tok(_prompt_text(tok, it, s), add_special_tokens=False)["input_ids"][-1024:])
                     for it in hhh for s in (False, True))
    if not only or "mc scoring" in only:
        measure("mc scoring", {e: (lambda m=m, k=k: (mc_accuracy(m, k, mc_items, batch_size=8), mc_tokens)[1])
                               for e, (m, k) in scorers.items()})
    if not only or "static hhh" in only:
        measure("static hhh", {e: (lambda m=m, k=k: (ab_preferences(m, k, hhh, batch_size=ALIGNMENT_CAPS["batch_size"]),
                                                     hhh_tokens)[1]) for e, (m, k) in scorers.items()})

    gflops = args.gflops or matmul_gflops()
    params = 134.5e6  # SmolLM2-135M (tied embeddings)
    bound = gflops * 1e9 / (2 * params)
    lines = ["# Engine throughput on CPU: CTranslate2 vs transformers (same run)", "",
             f"Command: `.venv/bin/python bench/engine_throughput.py {' '.join(argv or sys.argv[1:])}`  ",
             f"Machine: {platform.processor() or platform.machine()}, {threads} threads, float32 matmul "
             f"{gflops:.0f} GFLOP/s (numpy) → bound for batched decoding {bound:.0f} tok/s "
             f"(2 FLOPs × 135M parameters per token)  ",
             f"Versions: ctranslate2 {metadata.version('ctranslate2')} ({args.compute_type}), "
             f"transformers {metadata.version('transformers')}, torch {torch.__version__} (float32)  ",
             f"Model: the embedded SmolLM2-135M-Instruct; prompts: {len(questions)} taxonomy seed questions "
             f"as chat prompts; {args.repeats} timed repeats per cell after one warm-up (mean ± sd).", "",
             "| workload | settings | ctranslate2 tok/s | transformers tok/s | ratio | ct2 / bound | tf / bound |",
             "|---|---|---:|---:|---:|---:|---:|"]
    def prompt_tokens(msgs) -> str:
        n = sorted(len(tok(tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"]) for m in msgs)
        return f"{n[0]}-{n[-1]}"

    settings = {w[0]: f"{len(w[1])} prompts of {prompt_tokens(w[1])} tokens, ≤{w[2]} new, T {w[3]}, batch {w[4]}"
                for w in gen_work}
    settings["mc scoring"] = f"{len(mc_items)} items × 2 choices, batch 8"
    settings["static hhh"] = f"{len(hhh)} pairs × 2 orders, batch {ALIGNMENT_CAPS['batch_size']}"
    for name, cells in rows.items():
        c, t = cells.get("ctranslate2"), cells.get("transformers")
        if not (c and t):
            continue
        lines.append(f"| {name} | {settings[name]} | {c[0]:.1f} ± {c[1]:.1f} | {t[0]:.1f} ± {t[1]:.1f} | "
                     f"{c[0] / t[0]:.2f}x | {c[0] / bound:.2f} | {t[0] / bound:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
