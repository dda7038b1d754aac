"""Many runs as one: K runs of one task and profile trained as one stacked model, each its own record."""
