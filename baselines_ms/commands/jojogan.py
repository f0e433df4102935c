"""JoJoGAN in one command: fine-tune StyleGAN2 on one or a few style references, then stylize photos.

    python tools/jojogan.py --style ref1.png [ref2.png ...] --photos DIR_OR_FILES ... --out OUTDIR \\
        [--config yaml/baselines/jojogan.yaml] [--set key=value ...] [--strength 1.0]
    # no download, tiny random networks (a smoke test of the pipeline, not the method's quality):
    python tools/jojogan.py --config yaml/baselines/jojogan_quickstart.yaml \\
        --style builtin:painted/0000 --photos builtin:astronaut builtin:grace_hopper --out out/jojogan_quickstart

Writes OUTDIR/run/ (the training run: config.yaml, metrics.jsonl, samples/, checkpoints/),
OUTDIR/generator.ckpt (+ .json: the fine-tuned generator in the StyleGAN2 importer's format,
for create_stylizer("jojogan", OUTDIR/generator.ckpt, e4e=...) or any StyleGAN2 tool) and
OUTDIR/stylized/<photo stem>.png at the generator's resolution. Style entries: image files,
builtin:astronaut / builtin:grace_hopper, or a built-in set member (builtin:painted/0003);
photo entries also folders, .txt lists, .zip archives and whole built-in sets. Every input is
checked first (styles decoded, photos listed, outputs planned, weight files found): a problem
is one line on stderr, exit code 2, nothing written. No output replaces an input, and OUTDIR
may not be inside a photo folder. Files are written atomically.
"""
import argparse
import os
import sys

from modify_ms.cli import ToolParser, run_main  # first: quiets MindSpore before it is imported
from modify_ms.commands import repo_path


def parse_args(argv=None):
    parser = ToolParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", nargs="+", required=True, metavar="IMAGE", help="style reference(s), aligned faces")
    parser.add_argument("--photos", nargs="+", required=True, metavar="PATH", help="photos to stylize")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", default=repo_path("yaml", "baselines", "jojogan.yaml"),
                        help="JoJoGAN YAML config (default: yaml/baselines/jojogan.yaml, the notebook's setup)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--strength", type=float, default=1.0,
                        help="the paper's style strength in [0, 1] (feature interpolation; 0 = the original generator)")
    parser.add_argument("--max-photos", type=int, default=0, help="stylize only the first N photos (0: all)")
    parser.add_argument("--ext", default=".png", choices=[".png", ".jpg", ".jpeg", ".webp"],
                        help="format of the stylized photos (default .png)")
    parser.add_argument("--photo-align", default="auto", choices=["auto", "dlib", "none"],
                        help="FFHQ alignment of the photos (auto: when the align extra is installed)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.strength <= 1.0:
        parser.error(f"--strength must be in [0, 1], got {args.strength}")
    if args.max_photos < 0:
        parser.error(f"--max-photos must be >= 0, got {args.max_photos}")
    return args


def yaml_list(items):
    """A YAML flow list of strings for a --set override (paths may hold YAML's special characters)."""
    import json

    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def plan_outputs(args, photos, style):
    """The stylized files per photo name, checked against every input (modify_ms.stylize's plan)."""
    from modify_ms.stylize import OutputPlan, StylizeRequest, input_files

    names = [name for name, _, _ in photos]
    sources = {id(s): s for _, s, _ in photos if s is not None}
    inputs = input_files(names, None) + [s.archive for s in sources.values() if hasattr(s, "archive")] + \
        [s for s in style if os.path.isfile(s)]
    input_dirs = [p for p in args.photos if os.path.isdir(p)]
    request = StylizeRequest(input=args.photos[0], output_dir=os.path.join(args.out, "stylized"), ext=args.ext)
    request.validate()
    plan = OutputPlan(request, inputs, input_dirs)
    plan.add(names)
    return plan, inputs, input_dirs


def check_out_dir(out, input_dirs, inputs):
    from modify_ms.utils.paths import OutputPathError, check_output_dir, check_output_file

    check_output_dir(out, input_dirs)
    check_output_file(os.path.join(out, "generator.ckpt"), inputs, image=False)
    if os.path.isdir(os.path.join(out, "run", "checkpoints")):
        raise OutputPathError(f"{out}: holds a JoJoGAN run already (run/checkpoints); choose another --out")


def save_generator(generator, cfg, path):
    """The fine-tuned generator as the StyleGAN2 importer writes one (format modify_ms.stylegan2)."""
    from modify_ms.utils.checkpoint import save_arrays

    g = cfg.model.generator
    kwargs = dict(size=g.size, style_dim=g.style_dim, n_mlp=g.n_mlp, channel_multiplier=g.channel_multiplier,
                  channel_max=g.channel_max, lr_mlp=0.01)
    arrays = {name: p.asnumpy() for name, p in generator.parameters_and_names()}
    save_arrays(arrays, path, {"format": "modify_ms.stylegan2", "module": "modify_ms.models.stylegan2",
                               "arch": "Generator", "kwargs": kwargs, "source": "baselines_ms jojogan fine-tuning",
                               "style": list(cfg.style), "steps": cfg.steps, "preserve_color": cfg.preserve_color,
                               "num_params": len(arrays)})


def jojogan(argv=None):
    args = parse_args(argv)
    from modify_ms.config import load_config

    from baselines_ms.jojogan.config import JoJoGANConfig
    from baselines_ms.jojogan.inputs import list_photos, read_references

    run_dir = os.path.join(args.out, "run")
    cfg = load_config(args.config, JoJoGANConfig,
                      list(args.set) + [f"style={yaml_list(args.style)}", f"run.out_dir={run_dir}"])
    cfg.check_weight_files()
    log = lambda msg: print(msg, file=sys.stderr)
    references = read_references(cfg.style, cfg.model.generator.size, cfg.align)  # a bad style file stops here
    photos = list_photos(args.photos, args.max_photos)
    plan, inputs, input_dirs = plan_outputs(args, photos, cfg.style)
    check_out_dir(args.out, input_dirs, inputs)

    from modify_ms.data.imageio import InputError, save_image_atomic
    from modify_ms.data.prepare import from_model_array

    from baselines_ms.jojogan.inputs import read_entry
    from baselines_ms.jojogan.stylizer import JoJoGANStylizer
    from baselines_ms.jojogan.trainer import train_jojogan

    trainer = train_jojogan(cfg, run_dir, log=log, references=references)
    generator_path = os.path.join(args.out, "generator.ckpt")
    save_generator(trainer.nets.generator, cfg, generator_path)
    print(generator_path)
    stylizer = JoJoGANStylizer.from_trainer(trainer, args.strength, output_size=cfg.model.generator.size)
    skipped = 0
    for name, source, index in photos:
        try:
            x = read_entry(name, cfg.model.loss_size, args.photo_align, source, index)
        except InputError as exc:
            log(f"skipped {name}: {exc.reason}")
            skipped += 1
            continue
        path = plan[name].main
        save_image_atomic(path, from_model_array(stylizer.stylize(x, noise_seed=cfg.run.seed)[0]))
        print(path)
    log(f"jojogan: {len(photos) - skipped} photo(s) stylized in {os.path.join(args.out, 'stylized')}"
        + (f", {skipped} skipped" if skipped else ""))


def main(argv=None):
    """``python tools/jojogan.py``: one-line errors, exit code 2."""
    run_main(lambda: jojogan(argv))


if __name__ == "__main__":
    main()
