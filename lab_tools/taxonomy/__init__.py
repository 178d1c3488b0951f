"""The taxonomy: leaves (``qna.yaml``), their validation, diff, licenses and documents (LAB 3.1)."""
