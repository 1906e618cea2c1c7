"""The exception hierarchy of fluidsched.

Every error the Rust core reports maps, variant by variant, to one class here. Each class also derives from the
matching built-in exception, so ``except ValueError`` keeps working for callers who do not know fluidsched.

=========================  ==========================  ===============================================
Rust ``Error`` variant     Python class                 raised for
=========================  ==========================  ===============================================
``InvalidConfig``          :class:`InvalidConfigError`  bad option values, unknown policies or options
``InvalidRequest``         :class:`InvalidRequestError` a request that can never be served
``InvalidTrace``           :class:`InvalidTraceError`   malformed trace files and workloads
``UnknownRequest``         :class:`UnknownRequestError` a request id the scheduler does not hold
``DuplicateRequest``       :class:`DuplicateRequestError` adding an id twice
``InvalidState``           :class:`InvalidStateError`   step API called out of order
``Stalled``                :class:`StalledError`        a policy that can make no progress (a bug)
(bindings: argument type)  :class:`InvalidArgumentTypeError` a float, bool or None where an int is expected
(a Rust panic)             :class:`InternalError`       a bug in fluidsched; please report it
=========================  ==========================  ===============================================
"""

from __future__ import annotations

import re

__all__ = [
    "DuplicateRequestError",
    "FluidschedError",
    "InternalError",
    "InvalidArgumentTypeError",
    "InvalidConfigError",
    "InvalidRequestError",
    "InvalidStateError",
    "InvalidTraceError",
    "StalledError",
    "UnknownRequestError",
]


# The note PyO3 attaches to an error raised while it converts a function's argument.
_ARGUMENT_NOTE = re.compile(r"while processing '(\w+)'")


class FluidschedError(Exception):
    """Base class of every error raised by fluidsched.

    When the error arose while converting an argument of a native function, :attr:`argument` names it and the
    message starts with it (``num_blocks: expected an int, got str '10'``).
    """

    #: The argument being converted when the error was raised (``None`` when not an argument's conversion).
    argument: str | None = None

    def add_note(self, note: str, /) -> None:
        """Folds PyO3's "while processing 'ARG'" note into the message; other notes are kept as notes."""
        match = _ARGUMENT_NOTE.fullmatch(note)
        if match and self.argument is None and len(self.args) == 1 and isinstance(self.args[0], str):
            self.argument = match.group(1)
            self.args = (f"{self.argument}: {self.args[0]}",)
            return
        add_note = getattr(super(), "add_note", None)  # Python 3.11+
        if add_note is not None:
            add_note(note)


class InvalidConfigError(FluidschedError, ValueError):
    """A configuration value is out of range or inconsistent (zero memory, NaN rate, unknown option, ...)."""


class InvalidArgumentTypeError(InvalidConfigError, TypeError):
    """An argument of the wrong type (a float, a bool or None where an integer is expected, ...).

    Both an :class:`InvalidConfigError` and a ``TypeError``, so either ``except`` catches it.
    """


class InvalidRequestError(FluidschedError, ValueError):
    """A request's own fields are unusable (zero length, larger than the whole KV cache, ...)."""


class InvalidTraceError(FluidschedError, ValueError):
    """A trace file or workload could not be read (missing column, text in a numeric column, ...)."""


class UnknownRequestError(FluidschedError, KeyError):
    """A request id that the scheduler does not hold."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain message.
        return str(self.args[0]) if self.args else ""


class DuplicateRequestError(FluidschedError, ValueError):
    """A request id that the scheduler already holds."""


class InvalidStateError(FluidschedError, RuntimeError):
    """The step API was driven out of order (for example ``complete_step`` twice)."""


class StalledError(FluidschedError, RuntimeError):
    """The scheduler had work but could make no progress and had nothing to wait for."""


class InternalError(FluidschedError, RuntimeError):
    """A bug inside fluidsched (a Rust panic, caught). Please report it with the inputs that caused it."""
