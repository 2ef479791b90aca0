"""Builders of the licensed datasets, read from the files a user downloaded (``manual_dir``)."""
