"""Pair labels in logit order (COMPAT.md §4)."""

LABELS = ("same", "different", "empty_empty", "empty_valid", "valid_empty")
NUM_LABELS = len(LABELS)
