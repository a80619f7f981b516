"""Jobs in worker processes that may die: a worker killed mid-job (a segfault in the simulator, the
OOM killer, `kill -9`) fails only the job it held, with the reason, and a new worker takes its place.

Each worker is a spawned process (neither torch's threads nor an EGL context survive a fork) that
runs `init(*init_args)` once, then `work(job)` for each job it is sent, over its own pipe; the
parent waits on every pipe and every process at once, so it knows which job a dead worker held.
An exception raised by `init` or `work` is raised again in the parent (the whole run stops: that is
a bug or bad input, not a crash); a worker that dies before it is ready stops the run too (it would
die again). A worker that hangs (holds its job past `timeout_s`) is killed and its job fails the
same way: a deadlocked simulator must not hang the whole run.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from atomvla.errors import UserError

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")
STOP_TIMEOUT_S = 30  # a worker closing its envs and policy; killed after that


class WorkerError(UserError, RuntimeError):
    """A worker process that died before it could take a job."""


def how_it_died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


def _serve(conn: Connection, init: Callable[..., Any], init_args: tuple, work: Callable[[Any], Any],
           close: Callable[[], None]) -> None:
    """The worker's loop: init, say so, then one answer per job until told to stop (None)."""
    try:
        init(*init_args)
        conn.send(("ready", None))
        while (job := conn.recv()) is not None:
            conn.send(("done", work(job)))
    except BaseException as exc:  # noqa: BLE001  (raised again in the parent)
        try:
            conn.send(("raised", exc))
        except Exception:  # noqa: BLE001  (an exception that does not pickle)
            conn.send(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        close()


def _send(conn: Connection, message: Any) -> None:
    try:
        conn.send(message)
    except OSError:  # the worker is gone: its sentinel says so on the next wait
        pass


@dataclass
class _Worker(Generic[J]):
    process: BaseProcess
    conn: Connection
    job: J | None = None
    deadline: float = float("inf")  # time.monotonic() by which its job must be answered


def run_in_workers(
    n: int, init: Callable[..., Any], init_args: tuple, work: Callable[[J], R], close: Callable[[], None],
    jobs: Sequence[J], died: Callable[[J, str], R], timeout_s: float | None = None,
) -> Iterator[R]:
    """`work(job)` for every job on `n` workers, yielding results as they finish; a job whose worker
    died, or gave no answer within `timeout_s`, yields `died(job, how)` instead. `init`, `work` and
    `close` must be importable functions."""
    ctx = get_context("spawn")

    def start() -> _Worker[J]:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_serve, args=(child, init, init_args, work, close), daemon=True)
        process.start()
        child.close()  # the parent's copy: EOF on `parent` once the worker is gone
        return _Worker(process, parent)

    pending = deque(jobs)
    workers = [start() for _ in range(min(n, len(pending)))]
    stopping: list[_Worker[J]] = []
    finished = False
    def assign(w: _Worker[J]) -> None:
        w.job = pending.popleft()
        w.deadline = time.monotonic() + timeout_s if timeout_s is not None else float("inf")
        _send(w.conn, w.job)  # a worker that died meanwhile is found dead with this job

    try:
        while workers:
            deadline = min(w.deadline for w in workers)
            wait_s = None if deadline == float("inf") else max(0.0, deadline - time.monotonic())
            ready = set(wait([w.conn for w in workers] + [w.process.sentinel for w in workers], wait_s))
            for w in [w for w in workers if w.job is not None and w.deadline <= time.monotonic()
                      and w.conn not in ready and w.process.sentinel not in ready]:
                w.process.kill()
                w.process.join()
                w.conn.close()
                workers.remove(w)
                how = f"no answer in {timeout_s:g} s: killed"
                log.warning("a worker hung (%s) during %s%s", how, w.job, "; starting another" if pending else "")
                yield died(w.job, how)
                if pending:
                    workers.append(start())
            for w in [w for w in workers if w.conn in ready or w.process.sentinel in ready]:
                message = None
                try:
                    if w.conn.poll():
                        message = w.conn.recv()
                except (EOFError, OSError):  # the worker is gone
                    pass
                if message is None:
                    if w.process.is_alive():
                        continue
                    w.process.join()
                    how = how_it_died(w.process.exitcode)
                    workers.remove(w)
                    if w.job is None:
                        raise WorkerError(f"a rollout worker died while loading the policy ({how})")
                    log.warning("a worker died (%s) during %s%s", how, w.job, "; starting another" if pending else "")
                    yield died(w.job, how)
                    if pending:
                        workers.append(start())
                    continue
                kind, value = message
                if kind == "raised":
                    raise value
                if kind == "done":
                    w.job, w.deadline = None, float("inf")
                    yield value
                if pending:
                    assign(w)
                else:  # nothing left for it: let it close its envs and policy
                    _send(w.conn, None)
                    workers.remove(w)
                    stopping.append(w)
        finished = True
    finally:
        for w in workers + stopping:
            # stopped early (an error, an interrupt): the others' episodes are abandoned
            w.process.join(STOP_TIMEOUT_S if finished else 0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
