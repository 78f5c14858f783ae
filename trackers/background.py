"""`SerialJobs`: jobs run one at a time, in the order submitted, on one worker thread.

The tracker uses it to take checkpoints on a model copy while training goes on, and to
write trajectories and MLflow metrics off the training thread. A job's error is raised
in the submitting thread by the next `submit`, `wait` or `check` after the job failed;
jobs queued after a failed one are not run (a later write must not land before an
earlier one that failed)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class SerialJobs:
    """A FIFO of jobs on one worker thread named `name`."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: deque[Future] = deque()
        self._failed: BaseException | None = None
        self._lock = threading.Lock()  # the queue is shared by the submitting threads

    def _run(self, job: Callable[..., None], args: tuple[Any, ...]) -> None:
        if self._failed is None:
            try:
                job(*args)
            except BaseException as e:
                self._failed = e
                raise
        else:
            raise RuntimeError("not run: an earlier job failed") from self._failed

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        """Queue `job(*args)` after the jobs queued before (raising a finished job's error first)."""
        self.check()
        with self._lock:
            self._pending.append(self._executor.submit(self._run, job, args))

    def check(self) -> None:
        """Drop the finished jobs at the head of the queue; re-raise the first error among them."""
        while (future := self._pop(lambda f: f.done())) is not None:
            future.result()

    def wait(self, pending: int = 0) -> None:
        """Block until at most `pending` jobs are left; re-raises their errors, in order."""
        while (future := self._pop(lambda _: len(self._pending) > pending)) is not None:
            future.result()

    def _pop(self, ready: Callable[[Future], bool]) -> Future | None:
        """The head of the queue, removed, if there is one and `ready(head)`; else None."""
        with self._lock:
            return self._pending.popleft() if self._pending and ready(self._pending[0]) else None

    def __len__(self) -> int:
        return len(self._pending)
