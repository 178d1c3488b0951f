"""Static HHH loading and the position-debiased A/B judge (lab_tools/eval/preference.py)."""

from __future__ import annotations

import json
import math

import pytest

from lab_tools.errors import LabError
from lab_tools.eval.preference import ABItem, ab_preferences, hhh_accuracy, load_static_hhh, pairwise_win_rate

from tests.conftest import REPO

HHH = REPO / "lab_tools" / "evaldata" / "hhh_eval.json"  # shipped with the package


class _Judge:
    """A stand-in causal LM whose next-token distribution at the answer position is decided by a
    rule on the decoded prompt: ``rule(text) -> "A" | "B" | None`` (None: 50/50)."""

    def __init__(self, tokenizer, rule, strength: float = 0.9):
        import torch

        self.tok, self.rule, self.strength = tokenizer, rule, strength
        self._p = torch.nn.Parameter(torch.zeros(1))
        self.ids = {c: tokenizer(f" {c}", add_special_tokens=False)["input_ids"][-1] for c in "AB"}
        self.calls = 0

    def parameters(self):
        return iter([self._p])

    def eval(self):
        return self

    def __call__(self, input_ids, attention_mask):
        import torch

        self.calls += 1
        n, w = input_ids.shape
        logits = torch.full((n, w, len(self.tok)), -30.0)
        for k in range(n):
            last = int(attention_mask[k].sum()) - 1
            text = self.tok.decode(input_ids[k, :last + 1])
            pick = self.rule(text)
            pa = 0.5 if pick is None else (self.strength if pick == "A" else 1 - self.strength)
            logits[k, last, self.ids["A"]] = math.log(pa)
            logits[k, last, self.ids["B"]] = math.log(1 - pa)
        return type("Out", (), {"logits": logits})()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from lab_tools.tiny import make_tiny_tokenizer

    return make_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def _good_side(text: str):
    a = text.split("[Response A]\n", 1)[1].split("\n\n[Response B]", 1)[0]
    return "A" if "good" in a else "B"


def test_static_hhh_loads_all_pairs_by_type():
    items = load_static_hhh(HHH)
    assert len(items) == 221
    counts = {k: sum(i.kind == k for i in items) for k in ("honest", "helpful", "harmless", "other")}
    assert counts == {"honest": 61, "helpful": 59, "harmless": 58, "other": 43}
    assert all(i.a and i.b and i.a != i.b and "User:" in i.context for i in items)


def test_static_hhh_bad_file_is_a_clean_error(tmp_path):
    p = tmp_path / "h.json"
    p.write_text(json.dumps([{"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}]))
    with pytest.raises(LabError, match="do not share the dialogue") as exc:
        load_static_hhh(p)
    assert exc.value.file == str(p)


def test_position_bias_cancels(tok):
    # a judge that always says "A" whatever it reads: both orders cancel to exactly 0.5
    judge = _Judge(tok, lambda text: "A")
    items = [ABItem("User: q", "good answer", "bad answer"), ABItem("User: r", "bad", "good one")]
    assert ab_preferences(judge, tok, items) == [0.5, 0.5]
    assert hhh_accuracy(judge, tok, items)["accuracy"] == 0.5


def test_content_judge_prefers_the_good_side_in_both_orders(tok):
    judge = _Judge(tok, _good_side)
    items = [ABItem("User: q", "good answer", "bad answer", kind="helpful"),
             ABItem("User: r", "bad", "good one", kind="honest")]
    prefs = ab_preferences(judge, tok, items, batch_size=3)
    assert prefs[0] == pytest.approx(0.9) and prefs[1] == pytest.approx(0.1)
    acc = hhh_accuracy(judge, tok, items)
    assert acc["accuracy"] == 0.5 and {k: (v["accuracy"], v["n"]) for k, v in acc["per_type"].items()} == {
        "helpful": (1.0, 1), "honest": (0.0, 1)}
    assert acc["per_type"]["honest"]["interval"] == pytest.approx([0.0, 0.793451], abs=1e-6)  # Wilson 0 of 1
    assert acc["n"] == 2 and acc["too_small"]


def test_pairwise_win_rate_counts_ties_without_asking(tok):
    judge = _Judge(tok, _good_side)
    prompts = [{"messages": [{"role": "user", "content": f"q{i}"}], "leaf": "a/b"} for i in range(3)]
    out = pairwise_win_rate(judge, tok, prompts, ["good x", "same", "meh"], ["bad y", "same", "good z"])
    assert (out["wins"], out["ties"], out["losses"], out["n"]) == (1, 1, 1, 3)
    assert out["win_rate"] == pytest.approx(0.5)
    assert judge.calls == 1  # two asked items x two orders in one batch; the tie never asked
    assert out["verdicts"] == [1.0, 0.5, 0.0] and out["identical"] == 1 and len(out["interval"]) == 2


def test_real_tiny_model_gives_preferences_in_range(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tk = AutoTokenizer.from_pretrained(tiny_model)
    prefs = ab_preferences(model, tk, [ABItem("User: hi", "Paris is the capital.", "no")])
    assert len(prefs) == 1 and 0.0 < prefs[0] < 1.0
