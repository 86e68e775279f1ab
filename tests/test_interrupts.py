"""Signals become a flag checked between training steps; the previous handlers come back."""

import os
import signal

from tileunet.interrupts import Interrupted, SignalFlag


def test_a_signal_sets_the_flag_and_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with SignalFlag() as stop:
        assert stop.signum is None
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test process without the flag
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGTERM  # the first signal is the one reported
    assert signal.getsignal(signal.SIGTERM) is before


def test_interrupted_says_where_the_checkpoint_is():
    exc = Interrupted(signal.SIGTERM, 12, "ckpt/last.pt")
    assert "SIGTERM at iteration 12; checkpoint written to ckpt/last.pt. Rerun to resume" in str(exc)
