"""lab-tools: a Git-native taxonomy, taxonomy-driven SDG and phased training (LAB, arXiv 2403.01081).

Heavy libraries (torch, transformers, vllm) are imported lazily inside the functions that need
them, so that `lab --help` and `lab taxonomy ...` stay fast.
"""

__version__ = "0.1.0"
