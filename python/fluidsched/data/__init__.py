"""Small request traces shipped with the package (see ``ATTRIBUTION.md`` beside this file)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED_TRACES", "bundled_trace"]

_HERE = Path(__file__).resolve().parent

#: Short names of the bundled traces and their files.
BUNDLED_TRACES: dict[str, str] = {
    # First 5,000 requests of the Azure LLM inference trace 2023 (conversation), with arrival times.
    "azure": "azure_conv_2023_5k.csv",
    # 20,000 LMSYS-Chat-1M conversations (whitespace word counts, no arrival times).
    "lmsys": "lmsys_chat_1m_20k.csv",
}


def bundled_trace(name: str) -> Path:
    """Path of a bundled trace: ``"azure"`` or ``"lmsys"``."""
    try:
        return _HERE / BUNDLED_TRACES[name]
    except KeyError:
        raise ValueError(f"unknown bundled trace {name!r}; choose one of {sorted(BUNDLED_TRACES)}") from None
