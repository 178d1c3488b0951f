"""``python -m lab_tools.release.gguf_quantize IN.gguf OUT.gguf TYPE``: llama.cpp's quantizer
(``llama-quantize``) through llama-cpp-python's low-level ``llama_model_quantize``.

Run as a subprocess by :func:`lab_tools.release.llamacpp.quantize_gguf`, so that a native abort
ends this process only. Exit code 0 on success, llama.cpp's return code otherwise, 2 on usage.
Tensors whose rows do not fit a k-quant's 256-value blocks get llama.cpp's own fallback type
(it logs which), as ``llama-quantize`` does.
"""

from __future__ import annotations

import os
import sys

# TYPE -> llama_ftype (llama.h, LLAMA_FTYPE_MOSTLY_*); the names are llama-quantize's, lower case
FTYPES = {"q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k_m": 12, "q4_k_s": 14,
          "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18}


def quantize(in_file: str, out_file: str, qtype: str, nthread: int | None = None) -> int:
    """Quantize IN_FILE (an f32/f16/bf16 GGUF) to ``qtype`` (a key of :data:`FTYPES`) into
    OUT_FILE with llama.cpp's default parameters; ``nthread`` defaults to the CPU count.
    Returns llama.cpp's return code (0 = success).

    Raises:
        KeyError: ``qtype`` is not in :data:`FTYPES`.
        ImportError: llama-cpp-python is not installed.
    """
    import ctypes

    import llama_cpp

    ftype = FTYPES[qtype]
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = nthread or os.cpu_count() or 1
    return int(llama_cpp.llama_model_quantize(in_file.encode(), out_file.encode(), ctypes.byref(params)))


def main(argv: list[str] | None = None) -> int:
    """The command line: ``IN OUT TYPE``; prints a usage line and returns 2 on bad arguments."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[2] not in FTYPES:
        print(f"usage: python -m lab_tools.release.gguf_quantize IN.gguf OUT.gguf "
              f"{{{','.join(FTYPES)}}}", file=sys.stderr)
        return 2
    rc = quantize(*args)
    if rc != 0:
        print(f"llama_model_quantize returned {rc}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
