"""The background loop the streaming sensor fakes share: answer the host whenever it sends
something, and while streaming (and not paused) emit one message every ``period_s`` s."""

from __future__ import annotations

import select
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Self


class PacedServer(ABC):
    """A fake device's server thread from ``_start()`` until ``close()``.

    Subclasses set ``period_s`` (s between messages) and ``_streaming``, and implement
    ``_input`` (what to wait on: a file descriptor or socket), ``_receive`` (handle what is
    readable; True skips this round's send check), ``_emit`` (send one message) and
    ``_release`` (close the device's files once the thread has ended).
    """

    period_s: float
    paused: bool = False
    _streaming: bool = False

    def _start(self, name: str) -> None:
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @abstractmethod
    def _input(self) -> Any: ...

    @abstractmethod
    def _receive(self) -> bool: ...

    @abstractmethod
    def _emit(self) -> None: ...

    @abstractmethod
    def _release(self) -> None: ...

    @property
    def streaming(self) -> bool:
        return self._streaming

    def pause(self, paused: bool = True) -> None:
        """Stop or resume sending without leaving stream mode."""
        self.paused = paused

    def close(self) -> None:
        self._closing.set()
        self._thread.join()
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _serve(self) -> None:
        next_send = time.monotonic()
        while not self._closing.is_set():
            active = self._streaming and not self.paused
            timeout = max(0.0, next_send - time.monotonic()) if active else 0.05
            readable, _, _ = select.select([self._input()], [], [], timeout)
            if readable and self._receive():
                continue
            now = time.monotonic()
            if not active:
                next_send = now
                continue
            if now < next_send:
                continue
            # Keep the nominal rate but never burst to catch up after a stall.
            next_send += self.period_s
            if next_send <= now:
                next_send = now + self.period_s
            self._emit()
