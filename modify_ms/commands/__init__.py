"""The command-line tools: each module holds one tool's parser and ``main(argv=None)``.

``tools/<tool>.py`` and the console scripts installed by setup.py (``modify-train``,
``modify-stylize``, ``modify-evaluate``, ``modify-align``, ``modify-convert``,
``modify-render``) only call these ``main`` functions.
"""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout (pip install -e)


def repo_path(*parts):
    """A path in the repository checkout (its yaml/ configs are the tools' defaults)."""
    return os.path.join(REPO_ROOT, *parts)


def exit_now(code):
    """Flush and leave without interpreter teardown, where MindSpore's exit-time
    ``Cell.__del__`` prints 'Exception ignored' noise."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
