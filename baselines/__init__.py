"""Method specs (TOML data), shipped in the wheel as genseg_bench.baselines_data."""
