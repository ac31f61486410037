"""The rich consoles the CLI prints through (imported when a command prints for people,
never for ``--json``): laid out for the terminal, never wrapped or cut when piped."""

from __future__ import annotations

from rich.console import Console, ConsoleDimensions

PIPED_WIDTH = 1_000_000
"""The width rich lays out for when the output is not a terminal: wide enough that no
line is wrapped and no table cell cut or folded; tables stay as wide as their content."""


class PipeSafeConsole(Console):
    """A rich console that lays out for the terminal's width on a terminal, and never
    wraps or truncates when its output is piped or redirected (a log, ``grep``, a file)."""

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size, or :data:`PIPED_WIDTH` columns when not a terminal
        (whatever ``$COLUMNS`` says: it describes a terminal that is not being written)."""
        dimensions = super().size
        if self.is_terminal:
            return dimensions
        return ConsoleDimensions(PIPED_WIDTH, dimensions.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size
