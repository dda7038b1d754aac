"""The leaderboard's probe section: Spearman and descent tables, the probe-validity table, their figures."""
