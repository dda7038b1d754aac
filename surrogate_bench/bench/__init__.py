"""Throughput measurements: training steps per method and runs per process."""
