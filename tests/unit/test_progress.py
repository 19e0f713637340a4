"""The terminal progress line: drawn only on a terminal, never under --json, erased when done."""

from __future__ import annotations

import io

from shared.progress import progress


class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_only_on_a_terminal_and_never_under_json() -> None:
    terminal = FakeTerminal(tty=True)
    with progress("moving", stream=terminal, quiet=False) as show:
        show(1, 3)
        show(3, 3)  # the last step is always drawn, however soon after the previous one
    assert terminal.getvalue() == "\rmoving: 1 of 3\x1b[K\rmoving: 3 of 3\x1b[K\r\x1b[K"

    for stream, quiet in ((FakeTerminal(tty=False), False), (FakeTerminal(tty=True), True)):
        with progress("moving", stream=stream, quiet=quiet) as show:
            show(1, 3)
        assert stream.getvalue() == ""
