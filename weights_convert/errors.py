"""Exceptions of the weight converters.

Both are ``ValueError`` subclasses whose ``str()`` is ONE line, so a command
line can print it as is (no traceback):

* ``CheckpointError(path, message)``: a source file cannot be read (missing, empty,
  truncated, not a checkpoint, or it would run code).
  ``str(e) == f"{path}: {message}"``. It is a
  :class:`modify_ms.utils.checkpoint.CheckpointFileError`, the error of every ``.ckpt``
  read or written (``save_arrays``/``read_arrays``/``fill_cell``), so a tool catches one type.
* ``MappingError(source_name, problems)``: a checkpoint was read but its keys
  do not map one-to-one onto the target parameters. ``problems`` maps a
  category (``"unused source keys"``, ``"unfilled target params"``,
  ``"shape mismatches"``, ...) to the offending keys; long lists are
  truncated in the message with a count, the full lists stay available in
  ``e.problems``.
"""

from modify_ms.utils.checkpoint import CheckpointFileError

MAX_LISTED = 8  # keys shown per category before "... and N more"


def _one_line(text):
    return " ".join(str(text).split())


class CheckpointError(CheckpointFileError):
    """A checkpoint file cannot be read; ``str()`` is ``"PATH: message"``."""

    def __init__(self, path, message):
        self.path = str(path)
        self.message = _one_line(message)
        super().__init__(f"{self.path}: {self.message}")


def _format_list(items, limit=MAX_LISTED):
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... and {len(items) - limit} more"
    return shown


class MappingError(ValueError):
    """Keys of a checkpoint do not map one-to-one onto target parameters.

    ``problems``: dict category -> list of strings (keys, or "key: detail").
    Empty categories are dropped. Attributes ``unused``, ``unfilled`` and
    ``shape_mismatches`` give the three usual lists directly.
    """

    UNUSED = "unused source keys"
    UNFILLED = "unfilled target params"
    SHAPES = "shape mismatches"

    def __init__(self, source_name, problems):
        self.source_name = str(source_name)
        self.problems = {k: list(v) for k, v in problems.items() if v}
        parts = [f"{len(v)} {k}: {_format_list(v)}" for k, v in self.problems.items()]
        message = "; ".join(parts) if parts else "mapping failed"
        super().__init__(_one_line(f"{self.source_name}: {message}"))

    @property
    def unused(self):
        return self.problems.get(self.UNUSED, [])

    @property
    def unfilled(self):
        return self.problems.get(self.UNFILLED, [])

    @property
    def shape_mismatches(self):
        return self.problems.get(self.SHAPES, [])

    def mentions(self, key):
        """True when ``key`` appears in any problem entry (for tests)."""
        for entries in self.problems.values():
            for entry in entries:
                if key in entry.replace(":", " ").replace("'", " ").split():
                    return True
        return False
