"""One run, many runs, and their records on disk."""
