"""How training stops without losing work: signals become a flag checked between steps, and errors that say what was kept."""

import signal
import threading


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class Interrupted(Exception):
    """Training stopped by a signal after writing a checkpoint; rerun to resume."""

    def __init__(self, signum, iteration, path):
        self.signum, self.iteration, self.path = signum, iteration, path
        super().__init__(f"stopped by signal {signal.Signals(signum).name} at iteration {iteration}; "
                         f"checkpoint written to {path}. Rerun to resume")


class SignalFlag:
    """Turns SIGTERM/SIGINT into a flag checked between iterations (main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum, self._previous = None, {}

    def _handle(self, signum, frame):
        self.signum = self.signum or signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def worker_init(worker_id):
    # Workers leave signals to the main process, which saves a checkpoint and then shuts them down.
    for s in SignalFlag.SIGNALS:
        signal.signal(s, signal.SIG_IGN)
