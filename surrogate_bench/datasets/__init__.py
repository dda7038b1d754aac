"""Readers for the datasets' distributed layouts (no downloads unless asked)."""
