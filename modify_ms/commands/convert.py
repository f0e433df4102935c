"""``modify-convert``: the PyTorch weight converters' command line, the same as ``python -m weights_convert``
(subcommands inspect, stylegan2, inception, irse50, psp, lpips; see weights_convert/__main__.py)."""
from . import exit_now


def main(argv=None):
    """Exit code of ``python -m weights_convert ARGV`` (0, or 2 after a one-line error)."""
    from weights_convert.__main__ import main as convert

    return convert(argv)


def cli():
    """Console script: the exit code, without MindSpore's teardown noise."""
    exit_now(main())


if __name__ == "__main__":
    cli()
