"""RunHandle: a run going on in a background thread, to watch, cancel or wait for."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lambdakit.engine.progress import CANCELLED, FAILED, FINISHED, EventStream, Progress
from lambdakit.errors import SourceError, ToleranceExceeded

if TYPE_CHECKING:
    # Type-only, as in runner: results pulls in pandas, and the engine loads when a run
    # starts, so importing this module (which runner does at import) stays light.
    from lambdakit.engine.scheduler import Engine
    from lambdakit.results.result import RunResult

__all__ = ["RunHandle"]


class RunHandle:
    """A run going on in the background: watch `.events` / `.progress`, `.cancel()`, `.wait()`."""

    def __init__(self, engine: Engine, finish: Callable[[str], RunResult], run_id: str) -> None:
        self.run_id = run_id
        self._engine = engine
        self._finish = finish
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        # Set when the result (or error) is ready; wait() polls it in short slices.
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"lambdakit-run-{run_id[:8]}")
        self._thread.daemon = True
        self._thread.start()

    def _main(self) -> None:
        try:
            self._drive()
        finally:
            self._ended.set()

    def _drive(self) -> None:
        state = FINISHED
        try:
            self._engine.run()
        except BaseException as exc:  # kept for wait(): an error in the run is never lost
            self._error = exc
            state = FAILED
        if state == FINISHED and self._engine.stop_reason in ("cancelled", "outage"):
            state = CANCELLED
        try:
            self._result = self._finish(state)
        except BaseException as exc:
            self._error = self._error or exc
            state = FAILED
        if isinstance(self._error, SourceError) and self._error.result is None:
            self._error.result = self._result  # what was done before the source raised
        if self._error is None and self._engine.stop_reason == "tolerance":
            state = FAILED
            limit = self._result.meta["params"]["tolerated_failure"] if self._result else "?"
            self._error = ToleranceExceeded(
                f"{self._engine.tracker.snapshot().failed_records} records failed, more than "
                f"tolerated_failure={limit} allows; the run stopped (partial result in .result)",
                result=self._result,
            )
        self._engine.finish(state)

    @property
    def events(self) -> EventStream:
        """The run's ProgressEvents (iterate to follow them until the run ends)."""
        events = self._engine.tracker.events
        if events is None:  # started with events=False: an empty, ended stream
            events = EventStream(maxlen=1)
            events.close()
        return events

    @property
    def progress(self) -> Progress:
        """The latest counters."""
        return self._engine.tracker.snapshot()

    @property
    def done(self) -> bool:
        """Whether the run has ended and its result (or error) is ready."""
        return self._ended.is_set()

    @property
    def result(self) -> RunResult | None:
        """The RunResult once the run has ended (partial if it was cancelled or failed)."""
        return self._result

    def cancel(self, now: bool = False) -> None:
        """Stop submitting batches; in-flight ones get a short grace (none when `now`).

        Either way the run ends with a partial result: with `now`, invocations still running
        get attempt rows with outcome "cancelled" (a late success is still cached).
        """
        self._engine.cancel(now)

    def wait_through_interrupts(
        self, on_interrupt: Callable[[int], None] | None = None
    ) -> RunResult:
        """wait(), where Ctrl-C (KeyboardInterrupt) stops the run instead of losing it.

        The first interrupt stops submitting and lets in-flight work finish for the grace
        period; the second stops waiting for it; both still return the partial result. Only
        a third propagates. `on_interrupt(n)` is called with the count before each stop.
        """
        interrupts = handled = 0
        while True:
            # Acted on inside the `try`: an interrupt arriving meanwhile is counted, not lost.
            try:
                while handled < interrupts:
                    handled += 1
                    if on_interrupt is not None:
                        on_interrupt(handled)
                    self.cancel(now=handled >= 2)
                return self.wait()
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts >= 3:
                    raise

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends and return its RunResult (raises what ended the run)."""
        # Short slices: a main thread blocked in one long wait did not see a KeyboardInterrupt
        # (as Jupyter's stop button sends) until the whole run had finished.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended.wait(0.1):
            if deadline is not None and time.monotonic() >= deadline:
                break
        if not self._ended.is_set():
            raise TimeoutError(f"run {self.run_id} is still going after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __repr__(self) -> str:
        p = self.progress
        total = p.records_total if p.records_total is not None else "?"
        return f"<RunHandle {self.run_id[:8]} {p.state}: {p.records_done}/{total} records>"
