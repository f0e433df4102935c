"""Size and shape limits of the checkpoint readers (one home for every number).

A checkpoint is untrusted input: a few bytes may declare gigabytes, and a few
hundred bytes of shared references may expand into billions of objects. The
readers check what a file declares against these limits and against the bytes
actually present BEFORE they allocate, decompress or walk anything.

* ``max_total_bytes()``: decoded tensor data one file may hold (sum over its
  storages, and separately over its tensor views). Default 16 GiB (the largest
  public StyleGAN2 / pSp files are ~1.2 GB); set ``$MODIFY_MS_MAX_CHECKPOINT_BYTES``
  (``500M``, ``32G``, or a byte count) or ``--max-bytes`` on the command line,
  which wraps the run in :func:`limit_total_bytes`.
* ``MAX_DEPTH``: nesting of containers; real checkpoints nest < 20 levels
  (NVlabs network pickles are the deepest), and consumers walk them recursively.
* ``MAX_OBJECTS``: objects the result holds when every shared reference is
  counted once per reference (what a consumer that walks the tree visits).
"""
import contextlib
import re

from .errors import CheckpointError

MAX_BYTES_ENV = "MODIFY_MS_MAX_CHECKPOINT_BYTES"
DEFAULT_MAX_BYTES = 16 * 2 ** 30
MAX_DEPTH = 100
MAX_OBJECTS = 4_000_000
MAX_KEY_ITEMS = 256  # elements of one dict key / set member (tuples of scalars)

_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}
_override = None  # set by limit_total_bytes (the command line's --max-bytes)


def parse_size(text):
    """``'16G'`` -> 17179869184 (binary units K/M/G/T, optional 'iB'/'B'); ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"invalid size {text!r} (use a byte count or e.g. 512M, 16G)")
    value = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return value


def max_total_bytes():
    """The limit in force: ``limit_total_bytes`` > ``$MODIFY_MS_MAX_CHECKPOINT_BYTES`` > 16 GiB."""
    import os

    if _override is not None:
        return _override
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(text)
    except ValueError as exc:
        raise CheckpointError(f"${MAX_BYTES_ENV}", str(exc))


@contextlib.contextmanager
def limit_total_bytes(limit):
    """Use ``limit`` (bytes) instead of the environment/default inside the block."""
    global _override
    previous, _override = _override, int(limit)
    try:
        yield
    finally:
        _override = previous


class ByteBudget:
    """Decoded bytes one file may still allocate; ``take`` refuses before the allocation."""

    def __init__(self, path, limit=None):
        self.path = path
        self.limit = max_total_bytes() if limit is None else int(limit)
        self.used = 0

    def take(self, nbytes, what):
        nbytes = int(nbytes)
        if nbytes < 0:
            raise CheckpointError(self.path, f"{what} declares a negative size ({nbytes} bytes)")
        if self.used + nbytes > self.limit:
            raise CheckpointError(
                self.path, f"{what} would bring the decoded data to {self.used + nbytes:,} bytes, over the "
                f"limit of {self.limit:,} (raise it with --max-bytes or ${MAX_BYTES_ENV})")
        self.used += nbytes
