"""Shared by the CLI tests: run ``fluidsched`` in process and capture what it printed."""

from __future__ import annotations

import pytest

from fluidsched.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``fluidsched ARGS`` in process: (exit code, stdout, stderr). argparse exits are caught."""
    try:
        code = main(list(args))
    except SystemExit as e:
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
