"""Shared behaviour of the command-line tools: quiet MindSpore, one-line errors, clean exit.

Import this module before anything imports MindSpore.
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore C++ logging: errors only
os.environ.setdefault("GLOG_logtostderr", "1")


class ToolParser(argparse.ArgumentParser):
    """argparse with the tools' error contract: one line ``error: ...`` on stderr, exit code 2
    (argparse's own form is a usage block and a ``prog: error:`` line)."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.stderr.flush()
        os._exit(2)


def one_line(exc):
    """The message of a user error on one line (a file name or a reason may hold line breaks)."""
    return " ".join(str(exc).split())


def run_main(main):
    """Run ``main()``; a user error becomes one line on stderr with exit code 2, and the
    process leaves via os._exit so MindSpore's exit-time ``Cell.__del__`` noise never shows.
    Under msrun, the scheduler process msrun starts with the same command only serves the cluster."""
    from .train.distributed import launched_as_worker, serve_if_scheduler

    serve_if_scheduler()
    from .config import ConfigError
    from .data.imageio import InputError
    from .data.sources import DataSourceError
    from .train.checks import WeightsMissingError
    from .utils.checkpoint import CheckpointFileError
    from .utils.paths import OutputPathError

    user_errors = (ConfigError, InputError, DataSourceError, CheckpointFileError, OutputPathError, FileNotFoundError,
                   WeightsMissingError)
    code = 0
    try:
        code = main() or 0
    except user_errors as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        code = 2
    except OSError as exc:
        if exc.filename is None:  # not about a file the user named: a bug, keep the traceback
            raise
        # a folder without write permission, a full disk, a path through a file...
        print(f"error: {exc.filename}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    if launched_as_worker():  # an msrun worker leaves through Python's exit, which ends its cluster
        sys.exit(code)        # session cleanly (os._exit reads as a failed worker to the scheduler)
    os._exit(code)
