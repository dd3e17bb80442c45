"""SIGINT / SIGTERM: the run stops at its next safe point (between inner steps), not mid-write.

``stop_signals()`` installs the handlers for a whole command. Inside ``deferred()`` (the driver's
loop) the first signal only records a request, which the driver reads with ``requested()`` after
each inner step: it writes a checkpoint and raises ``RunInterrupted``. A second signal, or one
outside ``deferred()`` (start-up, evaluation), raises ``RunInterrupted`` at once; later ones are
ignored so that clean-up (stopping actors and the embedded cluster, ending the MLflow run) finishes.
``ray.init`` replaces the SIGTERM handler with Ray's own (which aborts), so ``reinstall()`` follows it.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from deca_ray.errors import RunInterrupted

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class _State:
    signal_number: int | None = None
    deferring: int = 0
    raised: bool = False


_state: _State | None = None


@contextmanager
def stop_signals() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as stop requests while the block runs (main thread only)."""
    global _state
    if threading.current_thread() is not threading.main_thread() or _state is not None:
        yield
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    _state = _State()
    reinstall()
    try:
        yield
    finally:
        _state = None
        for number, handler in previous.items():
            signal.signal(number, handler)


def reinstall() -> None:
    """Put our handlers back (after ``ray.init`` installed Ray's); a no-op outside ``stop_signals``."""
    if _state is not None and threading.current_thread() is threading.main_thread():
        for number in SIGNALS:
            signal.signal(number, _handle)


@contextmanager
def deferred() -> Iterator[None]:
    """While inside, a first signal waits for the next safe point (``requested``) instead of raising."""
    if _state is None:
        yield
        return
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1


def requested() -> int | None:
    """The signal that asked the run to stop, if one did (polled by the driver at safe points)."""
    return None if _state is None else _state.signal_number


def _handle(signal_number: int, frame: FrameType | None) -> None:
    state = _state
    if state is None or state.raised:
        return  # clean-up after a stop is running: let it finish
    name = signal.Signals(signal_number).name
    if state.deferring and state.signal_number is None:
        state.signal_number = signal_number
        logger.warning("%s: stopping after the current inner step (send it again to stop at once)", name)
        return
    state.signal_number = state.signal_number or signal_number
    state.raised = True
    raise RunInterrupted(signal_number)
