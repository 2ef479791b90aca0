"""Diagnostics of a finished run (``docs/results/distillation_diagnostics.md``)."""
