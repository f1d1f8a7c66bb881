"""Experiment files: schema, loading with line numbers, and errors."""
