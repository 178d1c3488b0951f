#!/usr/bin/env bash
# The GPU benchmark run behind bench/results/gpu-*.md, on a CUDA machine with this repository
# installed (`make install`). Prints a markdown report to stdout and saves it as
#   bench/results/gpu-<gpu name>-<date>.md
# Usage: bash bench/gpu.sh [NUM_GPUS]     (NUM_GPUS defaults to what nvidia-smi lists)
#
# 1. The fair training benchmark (bench/train_throughput.py, bf16): our loop vs TRL SFTTrainer
#    packed (BFD, padding-free, no gradient checkpointing) and unpacked, on a 1B-class random
#    Llama (lab_tools/tiny.py size "1b"; no download), same data and schedule, one run.
# 2. `lab train` KT/1 -> KT/2 -> ST on that model with training/accelerate/single-gpu.yaml, on
#    data from the scripted teacher (taxonomy/ of this repo).
# 3. The same KT/1 with FSDP (training/accelerate/fsdp.yaml) over NUM_GPUS processes; with one
#    GPU it runs one process (FSDP's code path, no sharding), and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
ngpu=${1:-$(nvidia-smi -L | wc -l)}
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
work=$(mktemp -d)
report="bench/results/gpu-${gpu}-$(date +%F).md"
export HF_HUB_OFFLINE=1

{
  echo "# ${gpu} x${ngpu}, $(date +%F); command: bash bench/gpu.sh ${ngpu}"
  $PY -c "import torch, transformers, accelerate, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'trl', trl.__version__)"
  echo
  echo '## Fair training benchmark (bench/train_throughput.py --model tiny-1b --ebs 16 --steps 5)'
  echo '```'
  /usr/bin/time -f 'real %es' $PY bench/train_throughput.py --model tiny-1b --ebs 16 --steps 5 \
    --micro-tokens 4096 --max-len 1024 2>&1 | grep -v -e 'it/s' -e 'Loading weights' -e 'Writing'
  echo '```'

  $PY -c "from lab_tools.tiny import make_tiny_model; make_tiny_model('$work/m1b', size='1b')"
  echo "cache_dir: $work/cache" > "$work/lab.yaml"
  .venv/bin/lab generate taxonomy --teacher scripted: --samples 20 --out "$work/data" \
    --config "$work/lab.yaml" --quiet > /dev/null
  echo
  echo '## lab train, single-gpu.yaml (bf16), 1B-class random Llama, scripted-teacher data, preset tiny-cpu'
  echo '```'
  /usr/bin/time -f 'real %es' .venv/bin/accelerate launch --config_file training/accelerate/single-gpu.yaml \
    -m lab_tools.train --data "$work/data" --model "$work/m1b" --preset tiny-cpu --judge scripted: \
    --out "$work/run1" --quiet 2>&1 | tail -3
  $PY - "$work/run1/manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print("world size", m.get("world_size"))
for name, p in m["phases"].items():
    print(name, "samples", p.get("samples"), "steps", p.get("steps"), "seconds", p.get("seconds"),
          "selected", "/".join(str(p.get("selected")).split("/")[-2:]))
EOF
  echo '```'
  echo
  echo "## FSDP (training/accelerate/fsdp.yaml) with --num_processes ${ngpu}, KT/1 only"
  [ "$ngpu" -lt 2 ] && echo "(one GPU: one process, FSDP without sharding)"
  echo '```'
  /usr/bin/time -f 'real %es' .venv/bin/accelerate launch --config_file training/accelerate/fsdp.yaml \
    --num_processes "$ngpu" -m lab_tools.train --data "$work/data" --model "$work/m1b" \
    --preset tiny-cpu --phases kt1 --out "$work/run2" --quiet 2>&1 | tail -3
  $PY -c "import json, sys; m = json.load(open(sys.argv[1])); print('world size', m['world_size'], 'kt1 steps', m['phases']['kt1']['steps'])" "$work/run2/manifest.json"
  echo '```'
} | tee "$report"
rm -rf "$work"
