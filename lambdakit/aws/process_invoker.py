"""ProcessInvoker: a run's invocations spread over worker processes, each with a lean client.

One kernel core is the ceiling of a run of small batches at high concurrency: the client's
CPU per invocation (signing, HTTP, reading the reply) is spent under one GIL. With
`run(processes=N)` the engine stays in the kernel's process, and each invocation goes to one
of N worker processes that each build their own LeanLambdaInvoker and threads. They are
started as `python -m lambdakit.aws.process_invoker` with two pipes, not by multiprocessing:
nothing is forked from a threaded kernel, and a user's script without a `__main__` guard is
not run again in each worker (as multiprocessing's spawn would). A batch travels as its
serialised body only (plus the items' ids when `id_field` is set): its records are never
pickled, so the parent's cost per invocation is one small pickle each way over a pipe. The
Outcome comes back whole.

A worker that cannot build the lean path says why before the run starts (InvalidInput, so
run() falls back to one process); one that dies mid-run fails what it had in flight as
`connection_error` (`Lambdakit.WorkerLost`), which the retry policy sends again elsewhere.
"""

from __future__ import annotations

import _thread
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdakit.aws.connection import client_read_timeout
from lambdakit.errors import InvalidInput
from lambdakit.invocation import CLIENT_ERROR, CONNECTION_ERROR, Batch, Invoker, Outcome, Target

__all__ = ["ProcessInvoker", "WorkerSpec"]

log = logging.getLogger("lambdakit.aws.process_invoker")

_START_TIMEOUT_S = 120.0  # a spawned worker imports botocore and builds a client
_STOP_TIMEOUT_S = 10.0  # idle workers told to stop, all of them together
_LOST = "Lambdakit.WorkerLost"


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to build its own lean client (picklable)."""

    target: Target
    function_name: str | None
    qualifier: str | None
    id_field: str | None
    outputs: str
    concurrency: int
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    read_timeout: float | None = None


def _serve(incoming: Any, conn: Any) -> None:
    """A worker process: build the lean invoker, then invoke what arrives until told to stop."""
    from concurrent.futures import ThreadPoolExecutor

    # Ctrl-C in a terminal reaches the whole process group: only the kernel decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        spec = incoming.recv()
        from lambdakit.aws.connection import make_client, make_session
        from lambdakit.aws.lean_invoker import LeanLambdaInvoker

        where = {"endpoint_url": spec.endpoint_url, "region": spec.region,
                 "profile": spec.profile}  # fmt: skip
        client = make_client(
            **where, concurrency=spec.concurrency, read_timeout=spec.read_timeout,
            function_timeout_s=spec.target.timeout_s, session=make_session(**where),
            parameter_validation=False,
        )  # fmt: skip
        invoker = LeanLambdaInvoker(
            client, spec.target, id_field=spec.id_field, qualifier=spec.qualifier,
            function_name=spec.function_name, outputs=spec.outputs,
        )  # fmt: skip
    except Exception as exc:  # told to the parent, which falls back to one process
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    sending = threading.Lock()

    def run(seq: int, index: int, items: list[Any], body: bytes) -> None:
        try:
            outcome = invoker.invoke(Batch(index, (), items, body))
        except Exception as exc:  # invoke() never raises; if it did, the attempt failed
            outcome = Outcome(CLIENT_ERROR, error_type=type(exc).__name__, error_message=str(exc))
        with sending:
            conn.send((seq, outcome))

    with ThreadPoolExecutor(spec.concurrency, thread_name_prefix="lambdakit-invoke") as pool:
        while True:
            try:
                message = incoming.recv()
            except (EOFError, OSError):  # the parent is gone
                break
            if message is None:
                break
            pool.submit(run, *message)


class _Worker:
    """The parent's side of one worker process: its pipe, and the calls waiting on it."""

    def __init__(self, process: Any, outgoing: Any, conn: Any) -> None:
        self.process = process
        self.outgoing = outgoing  # to the worker
        self.conn = conn  # from the worker
        self.sending = threading.Lock()
        self.pending: dict[int, list[Any]] = {}  # seq -> [lock held until answered, outcome]
        self.alive = True
        self.reader: threading.Thread | None = None

    def read(self) -> None:
        """Hand each outcome to the call waiting for it; when the pipe ends, fail the rest."""
        while True:
            try:
                seq, outcome = self.conn.recv()
            except (EOFError, OSError, TypeError, ValueError):
                break
            slot = self.pending.pop(seq, None)
            if slot is not None:
                slot[1] = outcome
                slot[0].release()
        self.alive = False
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        message = (
            f"the invoking worker process {self.process.pid} ended (exit code {code}) "
            "before it answered"
        )
        for seq in list(self.pending):
            slot = self.pending.pop(seq, None)
            if slot is not None:
                slot[1] = Outcome(CONNECTION_ERROR, error_type=_LOST, error_message=message)
                slot[0].release()


class ProcessInvoker:
    """Invoke through `processes` worker processes, each with its own LeanLambdaInvoker.

    `spec.concurrency` is each worker's thread count (the run's concurrency split between
    them). `probe` answers `probe()` from the kernel's process (an outage's question is
    whether the endpoint answers, not whether the workers do). `fallback`, an invoker in the
    kernel's process, carries the run on if every worker has ended (with a warning), so that
    a run whose workers were killed finishes instead of failing each retry at once. Raises
    InvalidInput when a worker cannot build the lean path; call `close()` when the run ends
    (run() does).
    """

    def __init__(
        self,
        spec: WorkerSpec,
        processes: int,
        *,
        probe: Callable[[], bool],
        fallback: Invoker | None = None,
    ) -> None:
        from multiprocessing.connection import Connection

        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise InvalidInput(f"processes must be an int >= 1, got {processes!r}")
        self.target = spec.target
        self.id_field = spec.id_field
        self.outputs = spec.outputs
        self.processes = processes
        self._probe = probe
        self._fallback = fallback
        self._fell_back = False
        # How long a worker may take to finish the calls it has in flight: each is bounded by
        # its client's read timeout (and connect timeout).
        self._drain_s = client_read_timeout(spec.read_timeout, spec.target.timeout_s) + 30.0
        self._seq = itertools.count()
        self._closed = False
        self._started = False  # the fallback is the caller's until the workers are up
        self._workers: list[_Worker] = []
        # The kernel's own import path: a notebook that put a checkout of lambdakit (or the
        # user's modules) on sys.path gets the same code in its workers.
        path = [os.path.abspath(entry) for entry in sys.path if entry]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}
        try:
            for _ in range(processes):
                from_parent, to_child = os.pipe()
                from_child, to_parent = os.pipe()
                process = subprocess.Popen(
                    [sys.executable, "-m", "lambdakit.aws.process_invoker",
                     str(from_parent), str(to_parent)],
                    pass_fds=(from_parent, to_parent), stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True,  # Ctrl-C is the kernel's to handle
                )  # fmt: skip
                os.close(from_parent)
                os.close(to_parent)
                worker = _Worker(
                    process, Connection(to_child, readable=False),
                    Connection(from_child, writable=False),
                )  # fmt: skip
                self._workers.append(worker)
                worker.outgoing.send(spec)
            for worker in self._workers:
                if not worker.conn.poll(_START_TIMEOUT_S):
                    raise InvalidInput(
                        f"a worker process did not start within {_START_TIMEOUT_S:.0f} s"
                    )
                state, reason = worker.conn.recv()
                if state != "ready":
                    raise InvalidInput(f"a worker process cannot invoke: {reason}")
        except BaseException as exc:  # Ctrl-C too: no worker outlives a start that failed
            self.close()
            if isinstance(exc, (EOFError, OSError)):
                raise InvalidInput(f"a worker process ended while starting: {exc}") from None
            raise
        for worker in self._workers:
            worker.reader = threading.Thread(
                target=worker.read, name=f"lambdakit-invoker-read-{worker.process.pid}",
                daemon=True,
            )  # fmt: skip
            worker.reader.start()
        self._started = True

    def __repr__(self) -> str:
        return f"ProcessInvoker({self.target.function_name!r}, processes={self.processes})"

    def invoke(self, batch: Batch) -> Outcome:
        """Send `batch` to the least busy worker and wait for its Outcome; never raises."""
        alive = [worker for worker in self._workers if worker.alive]
        if not alive and not self._closed and self._fallback is not None:
            if not self._fell_back:
                self._fell_back = True
                log.warning(
                    "every invoking worker process has ended; invoking from this process alone"
                )
            return self._fallback.invoke(batch)
        if not alive or self._closed:
            return Outcome(CONNECTION_ERROR, error_type=_LOST,
                           error_message="no invoking worker process is running")  # fmt: skip
        worker = min(alive, key=lambda w: len(w.pending))
        field = self.id_field
        if field:
            items = [{field: item.get(field)} if isinstance(item, dict) else None
                     for item in batch.items]  # fmt: skip
        else:
            items = [None] * len(batch.items)
        seq = next(self._seq)
        slot: list[Any] = [_thread.allocate_lock(), None]
        slot[0].acquire()
        worker.pending[seq] = slot
        try:
            with worker.sending:
                worker.outgoing.send((seq, batch.index, items, batch.body))
        except (OSError, ValueError) as exc:  # the pipe is closed: the worker is gone
            if worker.pending.pop(seq, None) is None:
                slot[0].acquire()  # the reader failed it first, with the worker's exit code
                return slot[1]
            return Outcome(
                CONNECTION_ERROR, error_type=_LOST,
                error_message=f"the invoking worker process {worker.process.pid} cannot be "
                f"reached ({exc}): it has ended",
            )  # fmt: skip
        slot[0].acquire()  # released by the reader with the outcome
        return slot[1]

    def probe(self) -> bool:
        """Whether the endpoint answers (asked from the kernel's process)."""
        return bool(self._probe())

    def close(self) -> None:
        """Stop the workers: at once when idle; calls still in flight finish first.

        A run cancelled with calls in flight (cancel(now=True)) has stopped waiting for them,
        but they may still succeed, and a late success is cached, as in one process: each
        worker finishes its calls, sends their outcomes and ends, while a thread waits for
        that (up to the calls' own read timeout) so that close() returns at once.
        """
        self._closed = True
        for worker in self._workers:
            try:
                with worker.sending:
                    worker.outgoing.send(None)
            except (OSError, ValueError):
                pass  # already gone
        if self._started and self._fallback is not None:
            close = getattr(self._fallback, "close", None)
            if close is not None:
                close()
        if any(worker.pending for worker in self._workers):
            threading.Thread(
                target=self._stop, args=(self._drain_s,), name="lambdakit-invoker-stop",
                daemon=True,
            ).start()  # fmt: skip
        else:
            self._stop(_STOP_TIMEOUT_S)

    def _stop(self, within_s: float) -> None:
        # One deadline for all the workers, not one each in turn.
        deadline = time.monotonic() + within_s
        for worker in self._workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process %s did not stop; terminating it", worker.process.pid)
                worker.process.terminate()
                try:
                    worker.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait()
            worker.outgoing.close()
            if worker.reader is not None:
                worker.reader.join(timeout=5)
            worker.conn.close()


def _main(argv: list[str]) -> None:
    from multiprocessing.connection import Connection

    incoming = Connection(int(argv[0]), writable=False)
    outgoing = Connection(int(argv[1]), readable=False)
    _serve(incoming, outgoing)


if __name__ == "__main__":
    _main(sys.argv[1:])
