"""The ``fluidsched options`` command: the option table of :mod:`fluidsched.options`, wrapped to the terminal,
or as JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from collections.abc import Sequence
from typing import Any

from fluidsched._core import POLICY_NAMES
from fluidsched.options import POLICY_SUMMARIES, checked_policies, option_docs, options_json

__all__ = ["add_parser", "format_options"]

_HEADER = ("OPTION", "TYPE", "DEFAULT", "DESCRIPTION")
#: Narrower than this, descriptions go on lines of their own under each option.
_MIN_DESCRIPTION_WIDTH = 30


def format_options(policies: Sequence[str] = (), width: int | None = None) -> str:
    """The option table of ``policies`` (all when empty), wrapped to ``width`` columns (default: the terminal's)."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    return "\n\n".join(_policy_block(p, width) for p in checked_policies(policies))


def _wrap(text: str, width: int, indent: str = "", first: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        max(width, 20),
        initial_indent=first,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )


def _policy_block(policy: str, width: int) -> str:
    """One policy's summary line and option table; the description column wraps, or moves under each option
    when the terminal is too narrow for it."""
    indent = "  "
    lines = _wrap(f"{policy}: {POLICY_SUMMARIES[policy]}", width, indent)
    docs = option_docs(policy)
    if not docs:
        return "\n".join([*lines, f"{indent}(no options)"])
    rows = [(d.name, d.type, d.default_text) for d in docs]
    widths = [max(len(c) for c in col) for col in zip(_HEADER[:3], *rows, strict=True)]
    lead = len(indent) + sum(w + 2 for w in widths)
    inline = width - lead >= _MIN_DESCRIPTION_WIDTH

    def cells(row: Sequence[str]) -> str:
        return indent + "".join(f"{c:<{w}}  " for c, w in zip(row, widths, strict=True))

    if inline:
        lines.append(cells(_HEADER[:3]) + _HEADER[3])
    for row, d in zip(rows, docs, strict=True):
        if inline:
            lines.extend(_wrap(d.description, width, " " * lead, first=cells(row)))
        else:
            lines.append(cells(row).rstrip())
            lines.extend(_wrap(d.description, width, " " * 6, first=" " * 6))
    return "\n".join(lines)


def _cmd_options(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(options_json(args.policies), indent=2))
    else:
        print(format_options(args.policies))
    return 0


def add_parser(sub: Any) -> None:
    """Registers the ``options`` subcommand."""
    p = sub.add_parser(
        "options",
        help="describe each policy option: type, default, meaning",
        description="Print every option a policy takes (simulate --policy P -o KEY=VALUE): its type, its default "
        "and what it does. 'fluidsched options' lists all policies.",
        epilog="examples:\n  fluidsched options wait\n  fluidsched options sarathi orca\n"
        "  fluidsched options nested-wait --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("policies", nargs="*", metavar="POLICY", help=f"policies to describe: {', '.join(POLICY_NAMES)}")
    p.add_argument("--json", action="store_true", help="print the table as one JSON object")
    p.set_defaults(func=_cmd_options)
