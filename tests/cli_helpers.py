"""Running the CLI in-process from a test: exit code, stdout and stderr."""

from __future__ import annotations

import pytest

from surrogate_bench import cli


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
