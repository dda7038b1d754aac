"""From records to the published page: leaderboard, plots, quoted numbers."""
