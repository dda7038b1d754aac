"""Test-only method whose ``supports`` raises: that run must get a failed record, the grid must go on."""

from surrogate_bench.plugins.contracts import Method


class SupportsRaises(Method):
    """``supports`` raises a RuntimeError (a plugin bug), nothing else runs."""

    name = "test-supports-raises"

    def supports(self, task):
        raise RuntimeError("deliberate failure in supports()")

    def make_loss(self, task):
        raise AssertionError("never reached")
