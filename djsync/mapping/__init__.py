"""Importers: the declarative mapping of a source onto target models."""
