"""Statistics of runs and verdicts: t intervals and paired tests over seeds, the test-set bootstrap."""
