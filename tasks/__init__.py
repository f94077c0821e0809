"""Task specs (TOML data), shipped in the wheel as genseg_bench.tasks_data."""
