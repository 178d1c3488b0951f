"""Taxonomy-driven synthetic data generation: skills-SDG and knowledge-SDG (LAB 3.2)."""
