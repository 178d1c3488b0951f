"""Selection and test sets (lab_tools/eval/sets.py): every leaf, disjoint, fixed seed."""

from __future__ import annotations

import json

from lab_tools.eval.sets import describe, draw, item_id, round_robin, selection_sets, split


def _mc(leaf: str, i: int) -> dict:
    return {"leaf": leaf, "question": f"{leaf} question {i}?", "choices": ["a", "b"], "answer": 0}


def _leaf_sorted_items():
    """Like heldout_mc.jsonl: sorted by leaf, leaf sizes 1..6."""
    return [_mc(f"knowledge/l{k}", i) for k in range(6) for i in range(k + 1)]


def test_split_is_disjoint_covers_every_leaf_and_keeps_everything():
    items = _leaf_sorted_items()
    parts = split(items)
    sel, test = {item_id(i) for i in parts["selection"]}, {item_id(i) for i in parts["test"]}
    assert not sel & test and len(sel | test) == len(items)
    leaves = {i["leaf"] for i in items}
    assert {i["leaf"] for i in parts["selection"]} == leaves  # every leaf has selection items
    assert {i["leaf"] for i in parts["test"]} == leaves - {"knowledge/l0"}  # a 1-item leaf has no test item
    for leaf in leaves:  # dealt alternately: the parts differ by at most one item per leaf
        n_sel = sum(i["leaf"] == leaf for i in parts["selection"])
        n_test = sum(i["leaf"] == leaf for i in parts["test"])
        assert n_sel - n_test in (0, 1)
    assert split(list(reversed(items))) == {k: list(reversed(v)) for k, v in parts.items()}  # order-free


def test_rows_sharing_an_id_fall_in_the_same_part():
    items = [_mc("knowledge/a", 0), _mc("knowledge/a", 0), _mc("knowledge/a", 1)]
    parts = split(items)
    assert {len(parts["selection"]), len(parts["test"])} == {1, 2}
    assert len({item_id(i) for i in parts["selection"]} & {item_id(i) for i in parts["test"]}) == 0


def test_capped_draw_spreads_over_leaves_not_the_head_of_the_file():
    items = [_mc(f"knowledge/l{k}", i) for k in range(4) for i in range(20)]  # leaf-sorted
    picked = draw(items, "selection", 4)
    assert len(picked) == 4 and len({p["leaf"] for p in picked}) == 4  # not 4 items of one leaf
    sixteen = draw(items, "selection", 16)
    assert [sum(p["leaf"] == f"knowledge/l{k}" for p in sixteen) for k in range(4)] == [4, 4, 4, 4]
    assert draw(items, "selection", 16) == sixteen  # fixed seed
    assert draw(items, "selection", 0) == []
    assert len(round_robin(items)) == len(items)
    mmlu = [{"source": s, "question": f"q{i}", "choices": ["a", "b"], "answer": 0} for s in "xy" for i in range(5)]
    assert {m["source"] for m in round_robin(mmlu, 2, key="source")} == {"x", "y"}


def test_selection_and_evaluation_sets_are_disjoint_and_cover_every_leaf(tmp_path, repo_root):
    from lab_tools.eval.evalset import load_eval_set
    from lab_tools.eval.heldout import knowledge_mc_items, skill_prompts
    from lab_tools.taxonomy.leaf import iter_leaves

    leaves = iter_leaves(repo_root / "taxonomy")
    mc, prompts = knowledge_mc_items(leaves), skill_prompts(leaves)
    (tmp_path / "heldout_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    (tmp_path / "heldout_prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompts))
    sel_mc, sel_prompts = selection_sets(tmp_path, None, None)  # what checkpoint selection scores
    evalset = load_eval_set(data_dir=tmp_path, max_mc=None, max_prompts=None)  # what lab evaluate reports
    for chosen, released, every in ((sel_mc, evalset.mc, mc), (sel_prompts, evalset.prompts, prompts)):
        assert chosen and released
        assert not {i["id"] for i in describe(chosen)} & {i["id"] for i in describe(released)}
        assert {i["leaf"] for i in chosen} == {i["leaf"] for i in every}
    # capped as the presets cap them, selection still spans as many leaves as the cap allows
    capped, _ = selection_sets(tmp_path, 4, 4)
    assert len({i["leaf"] for i in capped}) == min(4, len({i["leaf"] for i in mc}))
