"""Issue 23.3: bounded work per pull request -- leaves per preview, a hard chunk size, prompts cut
to the model's context (and counted), a time budget per preview."""

from __future__ import annotations

import json
import time

from tests.bot.conftest import HAIKU, pull_repo, skill_leaf  # noqa: F401 -- pull_repo is a fixture

from lab_tools.bot.preview import build_preview
from lab_tools.bot.render import render_comment
from lab_tools.config import load_config
from lab_tools.sdg.chunking import chunk_text
from lab_tools.sdg.teacher import ChatRequest, estimate_tokens


def _cfg(tmp_path, extra: str = "", teacher: str = "scripted:"):
    (tmp_path / "cfg.yaml").write_text(f"generate:\n  teacher: '{teacher}'\n  samples: 1\nbot:\n  samples: 1\n{extra}",
                                       encoding="utf-8")
    return load_config(None, tmp_path / "cfg.yaml")


def test_a_pull_request_with_200_leaves_generates_at_most_max_leaves(pull_repo, tmp_path, cache_dir):
    for i in range(200):
        pull_repo.write_leaf(f"compositional_skills/writing/many/leaf_{i:03d}", skill_leaf(f"Write haiku {i}.", HAIKU))
    pull_repo.commit("200 leaves")
    preview = build_preview(pull_repo.taxonomy, _cfg(tmp_path, "  max_leaves: 3\n"), base="main")
    generated = [v for v in preview.leaves if v.stats]
    assert len(preview.leaves) == 200 and len(generated) == 3
    assert [v.path for v in generated] == [f"compositional_skills/writing/many/leaf_{i:03d}" for i in range(3)]
    assert len(preview.skipped_leaves) == 197 and all(v.skipped for v in preview.leaves if not v.stats)
    body = render_comment(preview)
    assert "197 leaves over <code>bot.max_leaves</code>" in body
    assert "leaf&#95;003" in body  # the first skipped leaf is named


def test_a_document_without_whitespace_is_cut_to_the_chunk_cap(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    doc = "Intro sentence of the document. " + "abcdefghij" * 2000 + " A closing sentence here."
    for counter in (count, estimate_tokens):
        chunks = chunk_text(doc, counter, max_tokens=64, overlap=8)
        assert len(chunks) > 10 and max(counter(c) for c in chunks) <= 64
        assert "".join(c.replace(" ", "") for c in chunks).count("abcdefghij") >= 2000  # nothing lost


def test_long_prompts_are_cut_to_the_cap_and_counted(tmp_path, cache_dir):
    from lab_tools.sdg.pipeline import generate_dataset

    long = [(f"Write a haiku about {t}. " + "Consider every detail of the scene carefully. " * 60, a)
            for (q, a), t in zip(HAIKU, ("rain", "snow", "leaves", "sea", "mountain"))]
    leaf = tmp_path / "tax" / "compositional_skills" / "writing" / "long"
    leaf.mkdir(parents=True)
    (leaf / "qna.yaml").write_text(skill_leaf("Write haiku.", long), encoding="utf-8")
    cfg = _cfg(tmp_path, teacher="scripted:")
    cfg.generate.max_prompt_tokens = 300
    report = generate_dataset(tmp_path / "tax", None, tmp_path / "out", cfg, progress=False)
    (stats,) = report.leaves
    assert stats.truncated_prompts >= 1, stats
    card = json.loads(report.paths["card_json"].read_text())
    assert card["leaves"][0]["truncated_prompts"] == stats.truncated_prompts


def test_the_transformers_teacher_fits_its_context(tiny_model):
    from lab_tools.sdg.backends import TransformersTeacher

    teacher = TransformersTeacher(str(tiny_model), batch_size=2)
    teacher.model.config.max_position_embeddings = 96  # a small context: prompt + 16 new tokens
    msgs = [{"role": "system", "content": "You write haiku."},
            {"role": "user", "content": "Example request."}, {"role": "assistant", "content": "Example answer."},
            {"role": "user", "content": "Begin. " + "the quiet river runs " * 80 + " End: write one haiku."}]
    short = [{"role": "user", "content": "Write a haiku."}]
    comps = teacher.generate([ChatRequest(msgs, max_tokens=16, temperature=0.0),
                              ChatRequest(short, max_tokens=16, temperature=0.0)])
    assert comps[0].error is None and comps[0].prompt_tokens <= 96 - 16
    assert comps[0].extra["prompt_tokens_cut"] > 0 and "prompt_tokens_cut" not in comps[1].extra


def test_a_preview_stops_at_its_time_budget_and_says_what_it_cut(pull_repo, tmp_path, cache_dir):
    script = tmp_path / "slow.json"
    script.write_text(json.dumps({"delay": 0.3}), encoding="utf-8")
    for name in ("a", "b"):
        pull_repo.write_leaf(f"compositional_skills/writing/slow_{name}", skill_leaf("Write haiku.", HAIKU))
    pull_repo.commit("two slow leaves")
    cfg = _cfg(tmp_path, "  time_budget: 1.0\n", teacher=f"scripted:{script}")
    t = time.monotonic()
    preview = build_preview(pull_repo.taxonomy, cfg, base="main")
    assert time.monotonic() - t < 15  # the whole pipeline would take far longer at 0.3 s a request
    assert preview.failure is None and preview.budget_cut, preview
    assert all("before stage" in c for c in preview.budget_cut)
    body = render_comment(preview)
    assert "time budget" in body and "slow&#95;a" in body
