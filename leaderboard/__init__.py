"""The leaderboard Space, shipped in the wheel as genseg_bench.leaderboard_app."""
