"""Data: dataset builders, subject-independent splits, in-memory loading and batching."""
