"""fluidsched: fluid-guided, memory-aware scheduling for LLM inference.

The scheduling core is Rust (``fluidsched._core``); this package adds the Python API, trace helpers, the
``fluidsched`` command line and the simulator front end. Start with :func:`simulate`::

    import fluidsched
    result = fluidsched.simulate(fluidsched.bundled_trace("azure"), policy="vllm")
    print(result.summary()["throughput_tokens_per_s"])
"""

from __future__ import annotations

from fluidsched._core import (
    POLICY_NAMES,
    POLICY_OPTIONS,
    AdmissionController,
    FluidModel,
    Scheduler,
    Step,
    StepOutcome,
    Workload,
    __version__,
)
from fluidsched.data import bundled_trace
from fluidsched.errors import (
    DuplicateRequestError,
    FluidschedError,
    InternalError,
    InvalidArgumentTypeError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidStateError,
    InvalidTraceError,
    StalledError,
    UnknownRequestError,
)
from fluidsched.plan import PLAN_KEYS, plan
from fluidsched.presets import list_presets, load_preset
from fluidsched.simulate import SUMMARY_KEYS, SimResult, load_workload, simulate
from fluidsched.sweep import sweep

__all__ = [
    "PLAN_KEYS",
    "POLICY_NAMES",
    "POLICY_OPTIONS",
    "SUMMARY_KEYS",
    "AdmissionController",
    "DuplicateRequestError",
    "FluidModel",
    "FluidschedError",
    "InternalError",
    "InvalidArgumentTypeError",
    "InvalidConfigError",
    "InvalidRequestError",
    "InvalidStateError",
    "InvalidTraceError",
    "Scheduler",
    "SimResult",
    "StalledError",
    "Step",
    "StepOutcome",
    "UnknownRequestError",
    "Workload",
    "__version__",
    "bundled_trace",
    "list_presets",
    "load_preset",
    "load_workload",
    "plan",
    "simulate",
    "sweep",
]
