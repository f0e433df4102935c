"""Export the networks of a stage-1 run as stand-alone weight files (what a config's weights
section and tools/render_stylegan2.py --ckpt load).

    python tools/export_weights.py RUN_DIR --generator G.ckpt --encoder E.ckpt [--discriminator D.ckpt]

RUN_DIR is a stage-1 run folder (its latest checkpoint) or one of its checkpoints. Each output
is written through a temporary name with its JSON sidecar (architecture and source). The
quickstart's prior was made this way (docs/prior.md).
"""
import argparse
import os

from ..cli import ToolParser, run_main  # first: quiets MindSpore before it is imported


def export(argv=None):
    parser = ToolParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="stage-1 run folder or checkpoint")
    for network in ("generator", "encoder", "discriminator"):
        parser.add_argument(f"--{network}", default="", metavar="OUT.ckpt", help=f"write the {network} here")
    args = parser.parse_args(argv)

    from ..utils.paths import OutputPathError, check_output_file

    outputs = {n: getattr(args, n) for n in ("generator", "encoder", "discriminator") if getattr(args, n)}
    if not outputs:
        parser.error("nothing to export: give --generator, --encoder and/or --discriminator")
    if len({os.path.abspath(p) for p in outputs.values()}) < len(outputs):
        raise OutputPathError("two networks would be written to one file")
    from ..train.common import resolve_checkpoint
    from ..train.export import export_weights

    # never over the checkpoint read (a run folder names it only through latest.json) or its sidecar
    source = resolve_checkpoint(args.run)
    inputs = [args.run, source, source + ".json"]
    for path in outputs.values():
        if not path.endswith(".ckpt"):
            raise OutputPathError(f"{path}: a weight file name ends in .ckpt")
        for written in (path, path + ".json"):  # the file and its sidecar
            check_output_file(written, inputs=inputs, image=False)

    for network, path in export_weights(source, outputs).items():
        print(f"{network}: {path}")


def main(argv=None):
    run_main(lambda: export(argv))
