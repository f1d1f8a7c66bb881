"""Per-experiment state: model, atomic storage and pure transitions."""
