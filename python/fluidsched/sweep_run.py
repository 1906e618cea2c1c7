"""Where a sweep's runs execute: in this process, on local worker processes, or on a Ray cluster.

Each backend calls ``on_result(index, summary)`` in the parent as runs finish (in completion order); the caller
orders the rows by the grid. Ctrl-C (``KeyboardInterrupt``) cancels the runs not yet finished, stops the workers
and propagates.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from fluidsched.errors import InternalError, InvalidConfigError
from fluidsched.simulate import simulate
from fluidsched.sweep_grid import RunTask

__all__ = ["OnResult", "deferred_interrupt", "run_local", "run_ray", "run_task"]

#: Called in the parent for each finished run: (grid index, ``SimResult.summary()``).
OnResult = Callable[[int, dict[str, float]], None]


def run_task(task: RunTask) -> tuple[int, dict[str, float]]:
    """Simulates one run of the grid; a pure function of ``task``. Returns (grid index, summary)."""
    result = simulate(
        task.workload(), task.policy, policy_options=task.options or None, seed=task.seed, **task.sim_kwargs
    )
    return task.index, result.summary()


@contextmanager
def deferred_interrupt() -> Iterator[Callable[[], None]]:
    """Holds Ctrl-C until the next ``check()``, which raises :class:`KeyboardInterrupt` then.

    A SIGINT that lands while the extension converts a run's arrays (inside numpy's ``__index__``) is reported
    as "Exception ignored" and lost, so the sweep would run on; here the handler only records it, and the sweep
    stops at the next finished run (``check()`` is called after each). A second Ctrl-C interrupts at once.
    Outside the main thread (where no handler can be set) interrupts are left alone.
    """
    pending = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def record(signum: int, frame: object) -> None:
        if pending.is_set():
            raise KeyboardInterrupt
        pending.set()

    def check() -> None:
        if pending.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the parent's to handle (it terminates the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_local(tasks: Sequence[RunTask], jobs: int, on_result: OnResult) -> None:
    """Runs ``tasks`` on ``jobs`` worker processes (in this process when ``jobs`` is 1 or there is one task)."""
    if jobs <= 1 or len(tasks) <= 1:
        with deferred_interrupt() as check:
            for task in tasks:
                on_result(*run_task(task))
                check()
        return
    # spawn, not fork: the parent may hold threads (the progress bar's monitor), and fork copies none of them.
    # A pool of futures, not multiprocessing.Pool: a worker that cannot start breaks the pool (an error here)
    # instead of being restarted forever while the sweep waits.
    ctx = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx, initializer=_ignore_sigint)
    try:
        with deferred_interrupt() as check:
            futures = [executor.submit(run_task, task) for task in tasks]
            for future in as_completed(futures):
                on_result(*future.result())
                check()
    except BrokenProcessPool as e:
        _stop(executor)
        raise InternalError(
            f"a sweep worker process died ({e}); a script run from standard input cannot start worker processes: "
            "save it to a file, or use jobs=1"
        ) from None
    except BaseException:
        _stop(executor)
        raise
    executor.shutdown(wait=True)


def _stop(executor: ProcessPoolExecutor) -> None:
    """Cancels the runs not started and ends the workers now (Ctrl-C, or a run that failed)."""
    processes = list(getattr(executor, "_processes", {}).values())  # no public handle before Python 3.14
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


def run_ray(tasks: Sequence[RunTask], address: str, on_result: OnResult) -> None:
    """Runs ``tasks`` as Ray tasks (one CPU each) on the cluster at ``address`` (``"auto"``: the one this machine
    belongs to; ``"local"``: start a private one here). A process already connected to Ray uses that connection.
    """
    ray = _import_ray()
    started = False
    _check_reachable(address)  # also when already connected: an address nobody listens on is a mistake
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise InvalidConfigError(f"cannot connect to the Ray cluster at {address!r}: {e}") from e
        started = True
    remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
    pending: dict[Any, int] = {remote.remote(task): task.index for task in tasks}
    try:
        with deferred_interrupt() as check:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    del pending[ref]
                    on_result(*_get(ray, ref))
                check()
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _get(ray: Any, ref: Any) -> tuple[int, dict[str, float]]:
    """A finished task's result; a task's own exception (a bad option, ...) is raised as itself, not wrapped."""
    try:
        result: tuple[int, dict[str, float]] = ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise
    return result


def _check_reachable(address: str) -> None:
    """Fails fast on a ``host:port`` nobody listens on (Ray itself would retry for minutes)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or a form Ray resolves itself
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as e:
        raise InvalidConfigError(f"cannot reach the Ray cluster at {address!r}: {e.strerror or e}") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidConfigError(
            "the Ray backend needs Ray: pip install 'fluidsched[ray]' (or run without --ray / ray_address)"
        ) from None
    return ray
