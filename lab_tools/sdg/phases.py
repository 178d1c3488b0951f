"""Phase datasets (LAB table 1) and the dataset card.

- ``kt1.jsonl``: knowledge, responses shorter than ``kt_split_tokens`` teacher tokens;
- ``kt2.jsonl``: knowledge with longer responses, plus foundational skills;
- ``st.jsonl``: compositional skills.
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.atomic import write_json_atomic, write_jsonl_atomic, write_text_atomic

PHASES = ("kt1", "kt2", "st")


def phase_of(kind: str, response_tokens: int, kt_split_tokens: int) -> str:
    """The phase of a sample of leaf ``kind`` whose response has ``response_tokens`` tokens."""
    if kind == "knowledge":
        return "kt1" if response_tokens < kt_split_tokens else "kt2"
    if kind == "foundational_skills":
        return "kt2"
    return "st"


def write_phase_datasets(shards: list[dict], out_dir: Path, kt_split_tokens: int) -> dict[str, Path]:
    """Write ``kt1/kt2/st.jsonl`` and ``rejected.jsonl`` from finished shards (in leaf order);
    sets each sample's ``metadata.phase``. Returns the paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {p: [] for p in PHASES}
    rejected = []
    for shard in shards:
        for s in shard["samples"]:
            md = s["metadata"]
            md["phase"] = phase_of(md["kind"], md.get("response_tokens", 0), kt_split_tokens)
            rows[md["phase"]].append(s)
        rejected += [{"leaf": shard["leaf"], **r} for r in shard["rejected"]]
    paths = {p: out_dir / f"{p}.jsonl" for p in PHASES}
    for p in PHASES:
        write_jsonl_atomic(paths[p], rows[p])
    paths["rejected"] = out_dir / "rejected.jsonl"
    write_jsonl_atomic(paths["rejected"], rejected)
    return paths


def write_dataset_card(card: dict, out_dir: Path) -> tuple[Path, Path]:
    """``dataset_card.json`` (``card`` as is) and ``dataset_card.md`` (one table row per leaf;
    failed teacher/judge requests shown apart from quality rejections, as failed/sent by stage)."""
    jpath, mpath = out_dir / "dataset_card.json", out_dir / "dataset_card.md"
    write_json_atomic(jpath, card, indent=2, newline=True)
    lines = ["# Dataset card", "",
             f"Teacher: `{card['teacher']}` · judge: `{card['judge']}` · prompts: `{card['prompt_version']}`", "",
             *([] if card["settings"].get("model_judges", True) else
               ["**Model judges were off** (`generate.model_judges: false`): no instruction, pair, "
                "faithfulness or self-contained evaluation by a model; only rule-based filters ran.", ""]),
             "| phase | samples |", "|---|---|"]
    lines += [f"| {p} | {card['phases'][p]} |" for p in PHASES]
    lines += ["", "| leaf | kind | generated | kept | rejected (by stage) | malformed "
              "| request errors (failed/sent) | cached |", "|---|---|---|---|---|---|---|---|"]
    for leaf in card["leaves"]:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(leaf["rejected"].items())) or "0"
        mal = sum(leaf["malformed"].values())
        sent = leaf.get("requests_by_stage") or {}
        err = ", ".join(f"{k}: {n}/{sent.get(k, 0)}" for k, n in sorted((leaf.get("errors") or {}).items())
                        if n) or "0"
        lines.append(f"| `{leaf['leaf']}` | {leaf['kind']} | {leaf['generated']} | {leaf['kept']} "
                     f"| {rej} | {mal} | {err} | {'yes' if leaf['cached'] else 'FAILED' if leaf.get('error') else 'no'} |")
    write_text_atomic(mpath, "\n".join(lines) + "\n")
    return jpath, mpath
