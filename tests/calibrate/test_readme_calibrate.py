"""The README's ``fluidsched calibrate`` commands run (the core run's ``test_readme.py`` leaves them to this tier)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from torch_tier import require_torch

require_torch()

from cli_helpers import run_cli  # noqa: E402
from preset_schema import check_preset  # noqa: E402
from test_readme import COMMANDS, _normalise  # noqa: E402

CALIBRATE = [c for c in map(_normalise, COMMANDS) if c.startswith("fluidsched calibrate ")]


def test_the_readme_shows_a_calibrate_command() -> None:
    assert CALIBRATE


@pytest.mark.parametrize("command", CALIBRATE)
def test_readme_calibrate_command(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = shlex.split(command)[1:]
    code, out, err = run_cli(capsys, *args, "--threads", "1")
    assert code == 0, f"{command!r} exited {code}: {err.strip()[-500:]}"
    assert "fit error (MAPE)" in out
    check_preset(json.loads((tmp_path / args[args.index("--out") + 1]).read_text()))
