"""The demo's SIGTERM is not lost when Python drops the handler's raise.

CI once saw the demo run a whole 20,000-purchase day after SIGTERM: the handler's exception was
raised inside a SQLAlchemy garbage-collector callback, printed as "Exception ignored in" and
dropped. The signal is kept, and the next checkpoint raises it.
"""

from __future__ import annotations

import os
import signal
import weakref

import pytest

from celery_app.dev.demo import _Signalled, signals_interrupt


class _Thing:
    pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_whose_raise_was_dropped_is_raised_at_the_next_checkpoint() -> None:
    with signals_interrupt() as stop:
        thing = _Thing()
        # The handler runs inside the weakref callback; Python prints and drops its raise.
        ref = weakref.ref(thing, lambda _ref: os.kill(os.getpid(), signal.SIGTERM))
        del thing
        assert ref() is None
        with pytest.raises(_Signalled, match="demo interrupted by SIGTERM"):
            stop.check()
        # A second signal during the clean-up is ignored, not a second interruption.
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_no_signal_no_interruption() -> None:
    with signals_interrupt() as stop:
        stop.check()
