"""Network architectures used by the tasks."""
