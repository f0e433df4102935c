"""MMFS from a prompt to stylized photos: zero-shot (--text) or one-shot (--style-image) fine-tuning
of a phase-3 Stylizer's decoder on the photos, then the photos stylized with the prompt's w+.

    python tools/mmfs.py --stylizer RUN_OR_FILE (--text "a watercolor painting" | --style-image ref.png) \\
        --photos DIR_OR_FILES ... --out OUTDIR [--steps 200] [--clip clip.ckpt] [--dino dino.ckpt]

RUN_OR_FILE: an MMFS run (phase clip_mapping, or few_shot: then its decoder is used as it is, no
fine-tuning) or a converted phase3_pretrain_10000.pth (python -m weights_convert mmfs). CLIP and
DINO: --clip / --dino (converted files), else the run's weights.clip / weights.dino; a run with
``weights.require: false`` (the quickstart) uses random tiny stand-ins. The fine-tuning follows the
Stylizer's few_shot settings (200 steps, lr 2e-4, EMA 0.99, 0.5 L_ST + 1 L_CLIP + 100 L_PROJ), over
batches of the photos given. Writes OUTDIR/stylized/<photo stem>.png at the photos' read size. Every input is
checked first: a problem is one line on stderr, exit code 2, nothing written; files are written
under a temporary name and renamed; no output replaces an input.
"""
import argparse
import dataclasses
import os
import sys

from modify_ms.cli import ToolParser, run_main  # first: quiets MindSpore before it is imported


def parse_args(argv=None):
    parser = ToolParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stylizer", required=True, metavar="RUN_OR_FILE",
                        help="an MMFS phase-3 / phase-4 run or a converted phase-3 file")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--text", help="zero-shot: a text prompt")
    prompt.add_argument("--style-image", metavar="IMAGE", help="one-shot: a style reference image")
    parser.add_argument("--photos", nargs="+", required=True, metavar="PATH", help="photos to stylize")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: few_shot.steps, 200)")
    parser.add_argument("--batch", type=int, default=0, help="photos per fine-tuning step (0: data.batch_size)")
    parser.add_argument("--clip", default="", help="converted CLIP ViT-B/32 (python -m weights_convert clip)")
    parser.add_argument("--dino", default="", help="converted DINO ViT-B/8 (python -m weights_convert dino)")
    parser.add_argument("--seed", type=int, default=0, help="fine-tuning batches, noise and dropout")
    parser.add_argument("--max-photos", type=int, default=0, help="only the first N photos (0: all)")
    parser.add_argument("--ext", default=".png", choices=[".png", ".jpg", ".jpeg", ".webp"])
    parser.add_argument("--photo-align", default="none", choices=["auto", "dlib", "none"],
                        help="FFHQ alignment of the photos (default none: already aligned faces)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 0:
        parser.error(f"--steps must be >= 0, got {args.steps}")
    if args.batch < 0 or args.max_photos < 0:
        parser.error("--batch and --max-photos must be >= 0")
    return args


def with_weights(cfg, args):
    """cfg with --clip / --dino; a missing CLIP or DINO where the config requires weights is an error."""
    from modify_ms.train.checks import WeightsMissingError

    w = dataclasses.replace(cfg.weights, clip=args.clip or cfg.weights.clip, dino=args.dino or cfg.weights.dino)
    for key in ("clip", "dino"):
        path = getattr(w, key)
        if path and not os.path.isfile(path):
            raise WeightsMissingError(f"{path}: --{key} file not found")
        if not path and w.require:
            raise WeightsMissingError(f"no {key.upper()} weights: give --{key} (python -m weights_convert {key} ...)")
    return dataclasses.replace(cfg, weights=w)


def mmfs(argv=None):
    args = parse_args(argv)
    from baselines_ms.commands.jojogan import plan_outputs
    from baselines_ms.jojogan.inputs import list_photos

    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    if args.style_image:
        from baselines_ms.mmfs.prompting import read_prompt_image

        read_prompt_image(args.style_image)  # a bad prompt image stops here
    photos = list_photos(args.photos, args.max_photos)
    plan, inputs, input_dirs = plan_outputs(args, photos, [args.style_image] if args.style_image else [])
    from modify_ms.utils.paths import check_output_dir

    check_output_dir(args.out, input_dirs)

    import numpy as np

    from modify_ms.data.imageio import InputError, save_image_atomic
    from modify_ms.data.prepare import from_model_array
    from modify_ms.stylizers import StylizerError
    from modify_ms.train.common import progress

    from baselines_ms.jojogan.inputs import read_entry
    from baselines_ms.mmfs.prompting import PHASE, tune_on_photos
    from baselines_ms.mmfs.stylizer import MMFSStylizer

    stylizer = MMFSStylizer(args.stylizer, style_seed=args.seed, text=args.text or "",
                            style_image=args.style_image or "", log=log)
    if stylizer.network.clip_mapper is None:
        raise StylizerError(f"{args.stylizer}: this Stylizer has no clip mapper (a phase-2 file or run); "
                            "MMFS's prompts need phase 3")
    stylizer.cfg = with_weights(stylizer.cfg, args)
    read, skipped = [], 0
    for name, source, index in photos:
        try:
            read.append((name, read_entry(name, stylizer.size, args.photo_align, source, index)))
        except InputError as exc:
            log(f"skipped {name}: {exc.reason}")
            skipped += 1
    if not read:
        raise InputError(args.photos[0], "no readable photo")
    if stylizer.cfg.phase != PHASE:
        steps = stylizer.cfg.few_shot.steps if args.steps is None else args.steps
        bar = progress(steps, 0, "mmfs fine-tuning")
        try:
            tuning = tune_on_photos(stylizer.network, stylizer.cfg, np.concatenate([x for _, x in read]),
                                    args.text, args.style_image, steps=steps, batch=args.batch or None,
                                    seed=args.seed, log=log, progress=lambda: bar.update(1))
        finally:
            bar.close()
        stylizer._prompt_tuning = ((args.text, args.style_image), tuning)
    for name, x in read:
        path = plan[name].main
        save_image_atomic(path, from_model_array(stylizer.stylize(x, names=[name], noise_seed=args.seed)[0]))
        print(path)
    log(f"mmfs: {len(read)} photo(s) stylized in {os.path.join(args.out, 'stylized')}" + (f", {skipped} skipped" if skipped else ""))


def main(argv=None):
    """``python tools/mmfs.py``: one-line errors, exit code 2."""
    run_main(lambda: mmfs(argv))


if __name__ == "__main__":
    main()
