"""Runs: the orchestrator and what a run lives through (lifecycle, locks, history)."""
