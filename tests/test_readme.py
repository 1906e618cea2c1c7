"""Every command in README.md runs: the README cannot rot.

Fenced ``bash`` blocks are split into commands (``\\`` continuations joined, ``&&`` chains split, comments
dropped). A ``fluidsched ...`` command runs in process, in a scratch directory that sees the repository's
``python/`` folder, so the bundled sample paths resolve and outputs land in the scratch directory. A ``vllm serve``
command has its ``--additional-config`` checked and planned by the adapter's own settings code (vLLM itself runs
in the vLLM tier). Anything else must be listed in ``NOT_RUN_HERE`` with the place that does run it, so a new kind
of command cannot slip in untested. Fenced ``python`` blocks run as scripts, except the one that needs vLLM.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fluidsched.adapter import AdapterSettings, EngineLimits, build_controller

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

# Commands the core test run does not execute, each with where it is exercised instead.
NOT_RUN_HERE = {
    "python3 -m venv .venv": "environment setup: CI runs it on a clean checkout (.ci/run)",
    '.venv/bin/pip install ".[plot]"': "environment setup: CI installs the package the same way",
    "make test": "the run that executes this test",
    'pip install "fluidsched[vllm]"': "environment setup: the vLLM tier's environment (make vllm-env)",
    "pip install 'fluidsched[calibrate]'": "environment setup: the calibrate tier runs in the vLLM tier's environment",
}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[str]:
    return [body for tag, body in _FENCE.findall(README.read_text()) if tag == lang]


def _commands() -> list[str]:
    commands: list[str] = []
    for body in _blocks("bash"):
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            commands.extend(part.strip() for part in line.split("&&") if part.strip())
    return commands


def _normalise(command: str) -> str:
    # `.venv/bin/fluidsched demo` is the same command as `fluidsched demo` with the environment activated.
    return command.removeprefix(".venv/bin/")


COMMANDS = _commands()
# `fluidsched calibrate` needs torch: tests/calibrate/test_readme_calibrate.py runs those commands in its tier.
FLUIDSCHED = [c for c in map(_normalise, COMMANDS) if c.startswith("fluidsched ") and " calibrate " not in f"{c} "]
VLLM_SERVE = [c for c in COMMANDS if c.startswith("vllm serve ")]


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory where ``python/fluidsched/data/...`` resolves to the repository's samples."""
    (tmp_path / "python").symlink_to(REPO / "python", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_commands() -> None:
    assert len(FLUIDSCHED) >= 10
    assert VLLM_SERVE


def test_every_command_is_run_somewhere() -> None:
    for command in COMMANDS:
        c = _normalise(command)
        assert c.startswith(("fluidsched ", "vllm serve ")) or c in NOT_RUN_HERE or command in NOT_RUN_HERE, (
            f"README command {command!r} is run by no test: run it here or list it in NOT_RUN_HERE"
        )


@pytest.mark.parametrize("command", FLUIDSCHED)
def test_fluidsched_command(command: str, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = shlex.split(command)[1:]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, f"{command!r} exited {code}: {err.strip()[-500:]}"
    assert out.strip(), f"{command!r} printed nothing"
    if "--json" in args:
        json.loads(out)
    if "--out" in args:
        assert (scratch / args[args.index("--out") + 1]).stat().st_size > 0


@pytest.mark.parametrize("command", VLLM_SERVE)
def test_vllm_serve_settings_plan(command: str) -> None:
    args = shlex.split(command)
    assert args[args.index("--scheduler-cls") + 1] == "fluidsched.vllm.make_scheduler"
    config = json.loads(args[args.index("--additional-config") + 1])
    settings = AdapterSettings.from_mapping(config["fluidsched"])
    limits = EngineLimits(num_blocks=7423, block_size=16, max_num_seqs=256, max_num_batched_tokens=8192)
    controller = build_controller(settings, limits)
    assert controller.policy == settings.policy


def test_python_blocks(scratch: Path) -> None:
    blocks = _blocks("python")
    runnable = [b for b in blocks if "from vllm import" not in b]
    assert runnable
    assert len(blocks) - len(runnable) == 1
    for i, body in enumerate(runnable):
        script = scratch / f"readme_block_{i}.py"
        script.write_text(body)
        runpy.run_path(os.fspath(script), run_name="__main__")
    assert (scratch / "records.csv").stat().st_size > 0
