"""What every `tek` view puts on the screen: text that came from a user, a model or a tool is
data, never markup and never terminal control.

Three rules, one place:

- **Never markup.** rich reads `[bold]`, `[/x]` or `[a-z]` in a plain `str` as markup: it hides
  text (`echo '[a-z]*'` shown as `echo *`) or raises `MarkupError`. Here a cell is a rich `Text`
  (which rich never parses); nothing is formatted into a markup string.
- **Argv as the shell reads it.** A command is `shlex.join(argv)`, so that what a person sees is
  what `shlex.split` (and a shell) turns back into the same argv: `rm -rf 'a b'`, not `rm -rf a b`.
- **Control characters made visible.** An ANSI escape can recolour, move the cursor or clear the
  screen; `\\r` overwrites what was shown; a bidi override (U+202E) shows `txt.exe` for `exe.txt`.
  Each becomes its escape (`\\x1b`, `\\r`... as `\\x0d`, `\\u202e`), so it is seen, not obeyed.

Tables are rich's (box-drawn) on a terminal and plain aligned columns when stdout is a pipe or a
file (no box drawing, no folding, no cut: a script or `grep` gets every character). rich is
imported only when a table goes to a terminal (`tek ping` and piped output never load it).
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from collections.abc import Iterable, Sequence

__all__ = ["argv_line", "print_table", "visible", "when"]

# C0 controls (tab and newline included: a table cell or a one-line view has no room for
# them), DEL and C1 controls, the bidi marks, embeddings, overrides and isolates, and the
# Unicode line and paragraph separators (a terminal may break the line there).
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_ONE_LINE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_MULTI_LINE = re.compile(f"[\x00-\x08\x0b-\x1f{_BEYOND_C0}]")  # tab and newline stay


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object, *, lines: bool = False) -> str:
    """`text` (made a str) with every control character shown as its escape (`\\x1b`,
    `\\u202e`). With `lines`, newlines and tabs stay (a message's text over several lines);
    without, they are escaped too (a table cell, an argv, a one-line view)."""
    return (_MULTI_LINE if lines else _ONE_LINE).sub(_escape, str(text))


def argv_line(argv: Sequence[str]) -> str:
    """A command as a shell reads it (`shlex.join`), control characters visible."""
    return visible(shlex.join(argv))


def when(timestamp: float | None) -> str:
    """A moment as local date and time, `2026-01-31 14:05:09`; "" for none."""
    if not timestamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print `rows` under `columns`, every cell through `visible`: a rich table on a terminal,
    else plain columns two spaces apart (the last one unpadded, nothing folded or cut)."""
    cells = [[visible(cell) for cell in row] for row in rows]
    if not sys.stdout.isatty():
        _plain_table([visible(c) for c in columns], cells)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    Console(highlight=False, emoji=False).print(table)


def _plain_table(columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
    for row in [columns, *rows]:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        sys.stdout.write("  ".join([*padded, row[-1]]) + "\n")
    sys.stdout.flush()
