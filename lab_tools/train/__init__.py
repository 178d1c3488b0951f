"""Phased training (LAB 3.3): presets, data preparation, the Accelerate loop, phases, CLI."""
