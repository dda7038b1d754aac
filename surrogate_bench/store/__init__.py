"""Records on disk (atomic JSON, locks, reuse checks) and their provenance (code/data fingerprints)."""
