"""Synthetic feedback (ALMoST, arXiv 2305.13735): per-leaf synthetic comparisons from ranked
response configurations, a reward model trained on them with TRL, and its evaluation.

Modules: :mod:`~lab_tools.feedback.rubric` (configurations, rubric, demonstrations),
:mod:`~lab_tools.feedback.pairing` (ALMoST pairing and filters), ``comparisons`` (the stage of
``lab generate``), ``rm`` (``lab train --phase rm``), ``evaluate`` (RM accuracy, Static HHH).
"""
