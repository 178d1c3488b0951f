"""The shipped GPU settings (training/lab-yaml/gpu.yaml) load with no error and are sized for a
capable teacher's answers of hundreds of tokens, not the CPU model's ~100."""

from __future__ import annotations

from lab_tools.config import load_config
from tests.conftest import REPO

GPU_YAML = REPO / "training" / "lab-yaml" / "gpu.yaml"


def test_gpu_lab_yaml_loads_and_keeps_long_answers(tmp_path):
    cfg = load_config(tmp_path, GPU_YAML)  # an empty root: only the defaults and this file
    g, fb = cfg.generate, cfg.feedback
    assert g.answer_tokens >= 512 and g.qa_tokens >= 512 and g.max_new_tokens >= g.answer_tokens
    assert g.kt_split_tokens > 64 and g.eval_tokens >= 64 and g.model_judges
    assert fb.max_new_tokens >= 512 and fb.rm_max_length >= 2048 and fb.rm_lora_r > 0
    assert fb.preset == "gpu" and fb.hhh_pairs == 0  # all 221 Static HHH pairs
    assert cfg.train.preset == "merlinite-7b" and g.teacher.startswith("openai:")


def test_the_cpu_defaults_would_cut_those_answers(tmp_path):
    """The reason the file exists: the package defaults are CPU-sized."""
    cfg = load_config(tmp_path, None)
    assert cfg.generate.answer_tokens < 512 and cfg.feedback.rm_max_length < 2048


def test_both_lab_presets_fit_80_gib_with_the_gpu_settings(tmp_path, capsys, monkeypatch):
    """`lab build --plan --config training/lab-yaml/gpu.yaml`: every stage of both LAB presets fits
    80 GiB per GPU, and the LoRA reward model is planned far below the full one."""
    import json

    from lab_tools.cli import main

    monkeypatch.chdir(tmp_path)  # a taxonomy repository whose lab.yaml is this file alone

    peaks = {}
    for preset in ("merlinite-7b", "labradorite-13b"):
        try:
            main(["build", "--plan", "--preset", preset, "--config", str(GPU_YAML), "--json"])
        except SystemExit as exc:
            assert not exc.code
        plan = json.loads(capsys.readouterr().out)
        assert plan["fits"], [(s["stage"], s["notes"]) for s in plan["stages"] if not s["fits"]]
        peaks[preset] = {s["stage"]: s["peak_gib"] for s in plan["stages"]}
    assert peaks["merlinite-7b"]["reward_model"] < 40  # LoRA r=16 + checkpointing at 4096 tokens
