"""The console of a training run (given): its progress line and Ctrl-C, which stops training after the current step."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence


def estimate_eta(first: tuple[int, float], current: tuple[int, float], total: int) -> float | None:
    """Seconds until step `total`, from the pace between the end of the first step of this process and now.

    Args:
        first: (step, clock time) when the first step this process ran had finished. That step is left out of the
            pace: it includes tracing the training step (seconds, against milliseconds for the steps after it).
        current: (step, clock time) of the last finished step.
        total: the last step of the run.

    Returns:
        (total - step) * seconds per step since `first`, or None before a step after the first one has finished.
    """
    (first_step, first_time), (step, now) = first, current
    if step <= first_step:
        return None
    return max(total - step, 0) * (now - first_time) / (step - first_step)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """The console progress of `fit`.

    On a terminal, one line rewritten in place (carriage return, no escape codes), which keeps showing a value until
    a new one comes (the validation loss between evaluations); otherwise (a log file, a pipe) a plain line every
    `every` steps, on the steps given `force`, and at the last one, with the values of that step. Each line shows the
    step, the values, the time per step and the estimated time left (`estimate_eta`: both leave out the first step
    this process runs, which includes tracing). The time per step (ms/step) is that of the training steps alone: the
    time spent inside `untimed()` (`fit` runs each evaluation there) is left out of it. The estimated time left is
    wall-clock time and counts the evaluations, since the steps still to come have theirs.
    """

    def __init__(self, total: int, every: int = 10, stream=None, interactive: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, min_interval: float = 0.1):
        self.total, self.every, self.clock, self.min_interval = int(total), max(int(every), 1), clock, min_interval
        self.stream = sys.stdout if stream is None else stream
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.first: tuple[int, float] | None = None
        self.untimed_seconds = 0.0
        """Clock time spent inside `untimed()` since `first`, left out of the time per step."""
        self._width, self._last_write, self._open = 0, -math.inf, False
        self._shown: dict[str, float] = {}

    def line(self, step: int, values: Sequence[tuple[str, float]], now: float) -> str:
        """The progress line of `step` with `values` at clock time `now`."""
        digits = len(str(self.total))
        parts = [f"step {step:{digits}d}/{self.total}"]
        parts += [f"{name} {value:.2e}" if name == "lr" else f"{name} {value:.4f}" for name, value in values]
        eta = estimate_eta(self.first, (step, now), self.total) if self.first is not None else None
        if eta is not None:
            per_step = max(now - self.first[1] - self.untimed_seconds, 0.0) / (step - self.first[0])
            parts.append(f"{per_step * 1000:.0f} ms/step")
            if step < self.total:
                parts.append(f"ETA {_duration(eta)}")
        return "  ".join(parts)

    @contextlib.contextmanager
    def untimed(self) -> Iterator[None]:
        """Leave the clock time spent inside this block (an evaluation) out of the time per step."""
        start = self.clock()
        try:
            yield
        finally:
            self.untimed_seconds += self.clock() - start

    def update(self, step: int, values: Sequence[tuple[str, float]] = (), force: bool = False) -> None:
        """Show the progress after `step` has finished."""
        now = self.clock()
        if self.first is None:
            self.first = (step, now)
            self.untimed_seconds = 0.0  # time before `first` is not in the pace anyway
        last = step >= self.total
        if self.interactive:
            if not (last or force or now - self._last_write >= self.min_interval):
                self._shown.update(values)
                return
            self._shown.update(values)
            text = self.line(step, list(self._shown.items()), now)
            self.stream.write("\r" + text + " " * max(self._width - len(text), 0) + ("\n" if last else ""))
            self._width, self._open = (0, False) if last else (len(text), True)
        else:
            if not (last or force or step % self.every == 0):
                return
            self.stream.write(self.line(step, values, now) + "\n")
        self._last_write = now
        self.stream.flush()

    def close(self) -> None:
        """End the line being rewritten in place, if any (before printing something else)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open, self._width = False, 0


class StopRequest:
    """Ctrl-C (SIGINT) during training, deferred to the end of the current step.

    Inside `with StopRequest() as stop:` (in the main thread) the first SIGINT only sets `stop.requested`; `fit`
    checks it after every step, saves a checkpoint of that step and returns, so the step counter, the optimizer, the
    weights, the data position and the best loss in the checkpoint all describe the same point. The first SIGINT also
    puts the previous handler back, so a second one interrupts at once (KeyboardInterrupt), without saving.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:  # a process started with SIGINT ignored keeps ignoring it
                signal.signal(signal.SIGINT, self._handle)
                self._previous = signal.default_int_handler if previous is None else previous
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        self._previous = None
        try:  # os.write: print could re-enter a write to stderr that the signal interrupted
            os.write(sys.stderr.fileno(), b"\ninterrupted: stopping after this step and saving a checkpoint "
                                          b"(Ctrl-C again to quit without saving it)\n")
        except (AttributeError, OSError, ValueError):
            pass


def report_interrupt(latest: str | None) -> int:
    """Say on stderr where a run that Ctrl-C stopped outside the training loop's deferral (before the loop started,
    or a second Ctrl-C) can resume: its `latest` checkpoint, or that nothing was saved; returns the exit status 130."""
    print("\ninterrupted: " + (f"the latest checkpoint is {latest}; run the same command to resume from it"
                               if latest else "nothing was saved"), file=sys.stderr)
    return 130
