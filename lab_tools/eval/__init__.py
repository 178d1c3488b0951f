"""Evaluation: knowledge score (multiple-choice log-likelihood), judge score (MT-Bench style)."""
