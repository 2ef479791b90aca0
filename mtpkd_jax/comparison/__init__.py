"""Side-by-side comparison of methods over runs: summary tables and plots."""
