"""Test-only method whose loss raises: a failing run must be recorded and must not stop the grid."""

from surrogate_bench.plugins.contracts import Method


class AlwaysFails(Method):
    """Raises inside the loss to simulate a broken method."""

    name = "test-always-fails"

    def make_loss(self, task):
        def loss(outputs, targets):
            raise ValueError("deliberate failure from the test plugin")

        return loss
