"""Dummy files in the licensed datasets' real layouts (tiny media), for tests and smoke runs."""
