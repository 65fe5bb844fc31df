"""Backends that execute the runs of a benchmark grid: in this process, or as Ray tasks.

:func:`adlib.bench.run_grid` decides *what* to run (the (class, seed) pairs not yet in the results
file) and *what a row is* (:func:`adlib.bench.grid_row`); a backend only decides *where* each run
executes. Both backends hand every finished row back to the calling process, which appends it to
the results file at once, so a killed grid resumes from the file whichever backend wrote it.

``"local"`` runs the pairs one after the other in this process. ``"ray"`` submits each pair as
one Ray task (``ray.remote``; ``num_cpus``/``num_gpus`` reserved per task) and collects the
results with ``ray.wait`` as they finish, in whatever order. Ray is imported only when that
backend is chosen (``pip install -e ".[grid]"``).

About "local mode": Ray 2.60 no longer has ``ray.init(local_mode=True)`` (it raises
``RuntimeError: `local_mode` is no longer supported``). With ``address=None`` this module instead
starts a private single-machine Ray (``ray.init(include_dashboard=False)``, all of this machine's
CPUs; the tests start one with ``num_cpus=2``) whose workers are separate processes, as on a
cluster, and shuts it down at the end; the tests and ``results/grid_check_ray.jsonl`` use that.
``address="auto"`` joins a cluster started with ``ray start --head``, ``"ray://host:10001"`` one
reached through Ray Client. When Ray is already initialised (a notebook, a test fixture), it is
used as it is and left running.

Every task carries the caller's ``ADLIB_DATA``, ``ADLIB_CACHE``, ``ADLIB_COMMIT`` (those set) and
``OMP_NUM_THREADS`` (the caller's, else ``num_cpus``) in its ``runtime_env``. The workers import
``adlib`` from their own Python environment: on one machine the editable install of the checkout,
on a cluster every node needs the same checkout installed (``pip install -e .``). The shared
context (the loaded datasets) goes once into Ray's object store, so workers read no data folder.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

from tqdm.auto import tqdm

__all__ = ["BACKENDS", "GridRunError", "run_jobs", "run_local", "run_ray", "worker_env"]

#: The names :func:`run_jobs` accepts.
BACKENDS = ("local", "ray")
#: Environment variables a Ray worker inherits from the caller when they are set.
FORWARDED_ENV = ("ADLIB_DATA", "ADLIB_CACHE", "ADLIB_COMMIT", "OMP_NUM_THREADS")


class GridRunError(RuntimeError):
    """Some runs of a grid failed; ``failed`` lists their (class, seed) pairs. The rows of the
    runs that finished were already handed to ``on_result`` (appended to the results file)."""

    def __init__(self, message: str, failed: list):
        super().__init__(message)
        self.failed = failed


def _label(job) -> str:
    c, s = job
    return f"(class {c}, seed {s})"


def run_jobs(fn: Callable, shared, jobs: Iterable, on_result: Callable, *,
             backend: str = "local", address: str | None = None, num_cpus: float = 1,
             num_gpus: float = 0, desc: str = "grid", verbose: bool = True) -> None:
    """Call ``fn(shared, job)`` for every ``(class, seed)`` job with ``backend``; call
    ``on_result(job, result)`` in this process as each one finishes.

    ``fn`` must be a module-level function (Ray pickles it by reference) and ``shared`` the
    picklable context common to all jobs (datasets, parameters), sent once to Ray's object store.
    ``address``, ``num_cpus`` and ``num_gpus`` apply to the Ray backend only.

    Raises:
        ValueError: an unknown backend.
        ImportError: ``backend="ray"`` without Ray installed.
        GridRunError: a Ray task failed (the local backend lets the run's own error through).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    jobs = list(jobs)
    if backend == "local":
        run_local(fn, shared, jobs, on_result, desc=desc, verbose=verbose)
    else:
        run_ray(fn, shared, jobs, on_result, address=address, num_cpus=num_cpus,
                num_gpus=num_gpus, desc=desc, verbose=verbose)


def run_local(fn: Callable, shared, jobs: list, on_result: Callable, *, desc: str = "grid",
              verbose: bool = True) -> None:
    """Run the jobs one after the other in this process (the first error stops the grid)."""
    for job in tqdm(jobs, desc=desc, unit="run", disable=not verbose):
        on_result(job, fn(shared, job))


def worker_env(num_cpus: float = 1) -> dict:
    """The ``env_vars`` of a Ray task's ``runtime_env``: the caller's :data:`FORWARDED_ENV`
    that are set, and ``OMP_NUM_THREADS`` (default ``num_cpus``, at least 1)."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    env.setdefault("OMP_NUM_THREADS", str(max(1, int(num_cpus))))
    return env


def _cause(err: Exception) -> Exception:
    """The run's own exception inside a Ray task error (else ``err`` itself)."""
    return getattr(err, "cause", None) or err


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError('the ray backend needs Ray: pip install -e ".[grid]"') from err
    return ray


def run_ray(fn: Callable, shared, jobs: list, on_result: Callable, *,
            address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
            desc: str = "grid", verbose: bool = True) -> None:
    """Run every job as one Ray task and hand each result to ``on_result`` as it finishes.

    ``address=None`` starts a single-machine Ray here (no dashboard) and stops it at the end;
    ``"auto"`` or ``"ray://..."`` connects to a running cluster. A Ray already initialised in this
    process is used as it is. A failed task does not stop the others: every task that finishes
    is handed over, then :class:`GridRunError` names the (class, seed) pairs that failed, with
    the first failure's error as its cause.
    """
    if not jobs:
        return
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose)
    try:
        task = ray.remote(fn).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                      runtime_env={"env_vars": worker_env(num_cpus)})
        shared_ref = ray.put(shared)
        pending = {task.remote(shared_ref, job): job for job in jobs}
        failures = []
        with tqdm(total=len(jobs), desc=f"{desc} (ray)", unit="run",
                  disable=not verbose) as bar:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as err:  # RayTaskError (its cause: the run's error), a crash
                    failures.append((job, err))
                    if verbose:
                        tqdm.write(f"  {_label(job)} failed: {_cause(err)!r}")
                else:
                    on_result(job, result)
                bar.update()
    finally:
        if started_here:
            ray.shutdown()
    if failures:
        job, err = failures[0]
        cause = _cause(err)
        names = ", ".join(_label(j) for j, _ in failures)
        raise GridRunError(
            f"{len(failures)} of {len(jobs)} runs failed on Ray: {names}; first error "
            f"{_label(job)}: {type(cause).__name__}: {cause}. The rows of the runs that "
            "finished are in the results file: run the grid again to retry only the failed "
            "ones.", [j for j, _ in failures]) from err  # err holds the worker's traceback
