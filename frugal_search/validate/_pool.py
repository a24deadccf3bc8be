"""Run independent training runs one after another or in worker processes; the caller records each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def run_each(
    function: Callable[..., Any],
    jobs: Sequence[tuple[Any, tuple[Any, ...]]],
    *,
    workers: int,
    on_result: Callable[[Any, Any], None],
) -> None:
    """Call ``function(*args)`` for every ``(key, args)`` of ``jobs`` and ``on_result(key, result)``
    in this process as each one ends.

    With ``workers`` > 1 the calls run in that many spawned processes (a forked child would inherit
    torch's thread pool and locks), each with one torch thread: small models on a shared CPU run
    faster side by side than with several threads fighting over the cores. Only this process
    writes (``on_result``), so a storage never sees two writers from here.
    """
    if workers <= 1 or len(jobs) <= 1:
        for key, args in jobs:
            on_result(key, function(*args))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread) as pool:
        futures = {pool.submit(function, *args): key for key, args in jobs}
        for future in as_completed(futures):
            on_result(futures[future], future.result())


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
