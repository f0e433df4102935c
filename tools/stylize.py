"""Stage 2 of MODIFY: stylize photos with a stage-1 model, without any style image.

    # one photo, test-time adaptation (50 steps by default)
    python tools/stylize.py --stage1 runs/quickstart --input photo.jpg --output out.png
    # a folder, online mode (one update per arriving image; --watch waits for new files)
    python tools/stylize.py --stage1 RUN --mode online --input IN_DIR --output-dir OUT [--watch]
    # offline: train E' on the source set in the config's data section, then stylize --input
    python tools/stylize.py --stage1 RUN --mode offline --input IN_DIR --output-dir OUT
    # multi-modal: K variants from K style samples (<stem>_k{i}.png and a grid <stem>_variants.png),
    # and an interpolation strip between two
    python tools/stylize.py --stage1 RUN --input photo.jpg --output out.png --variants 6 --interpolate 6
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from modify_ms.cli import run_main  # noqa: E402


def _is_single(path):
    from modify_ms.data.builtin import SINGLE_PHOTOS

    return path in SINGLE_PHOTOS or (os.path.isfile(path) and not path.endswith((".txt", ".zip")))


def _inputs(path):
    from modify_ms.data.sources import open_source

    if path.startswith("builtin:") or os.path.isdir(path) or path.endswith((".txt", ".zip")):
        source = open_source(path)
        return list(source.names), source
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such photo or folder")
    return [path], None


def _photos(names, source, size, align):
    from modify_ms.data.prepare import load_photo, to_model_array

    from modify_ms.data.align import Aligner
    from modify_ms.data.builtin import SINGLE_PHOTOS, single_photo

    for i, name in enumerate(names):
        if name in SINGLE_PHOTOS:
            yield name, to_model_array(Aligner(size, align)(single_photo(name), name).image)[None]
        elif source is None:
            yield name, load_photo(name, size, align=align)[None]
        else:
            yield name, to_model_array(Aligner(size, align, no_face="center")(source.read(i), name).image)[None]


def _watch(folder, size, align, poll):
    """Yield photos as they appear in ``folder`` (sorted by arrival), until interrupted."""
    from modify_ms.data.prepare import load_photo
    from modify_ms.data.sources import scan_folder

    seen = set()
    while True:
        names, _ = scan_folder(folder)
        new = [n for n in names if n not in seen]
        new.sort(key=lambda n: (os.path.getmtime(n), n))
        for name in new:
            seen.add(name)
            yield name, load_photo(name, size, align=align)[None]
        time.sleep(poll)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="yaml/ffhq_stylize.yaml", help="stage-2 YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--stage1", help="stage-1 run directory or checkpoint (overrides the config's stage1)")
    parser.add_argument("--mode", choices=["offline", "online", "test-time"], help="overrides the config's mode")
    parser.add_argument("--input", required=True,
                        help="a photo, a folder, a .txt list, a .zip, builtin:photos, or one bundled photo "
                             "(builtin:astronaut, builtin:grace_hopper)")
    parser.add_argument("--output", help="output image for a single --input photo")
    parser.add_argument("--output-dir", help="output folder (one PNG per input, same stem)")
    parser.add_argument("--align", default="auto", choices=["auto", "dlib", "none"],
                        help="FFHQ face alignment (auto: when the align extra is installed)")
    parser.add_argument("--steps", type=int, help="test-time steps (default: the config's test_time_steps)")
    parser.add_argument("--watch", action="store_true", help="online mode: keep watching --input for new files")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between scans of a watched folder")
    parser.add_argument("--resume", action="store_true", help="online/offline: continue from --output-dir's checkpoint")
    parser.add_argument("--variants", type=int, default=0, help="also write K variants from K style samples z")
    parser.add_argument("--interpolate", type=int, default=0, help="also write N frames between two style samples")
    args = parser.parse_args()

    from modify_ms.config import load_config
    from modify_ms.train.config import Stage2Config

    overrides = list(args.set)
    if args.stage1:
        overrides.append(f"stage1={args.stage1}")
    if args.mode:
        overrides.append(f"mode={args.mode}")
    if args.steps:
        overrides.append(f"test_time_steps={args.steps}")
    cfg = load_config(args.config, Stage2Config, overrides)

    if not (args.input.startswith("builtin:") or os.path.exists(args.input)):
        raise FileNotFoundError(f"{args.input}: no such photo, folder or list")
    single = _is_single(args.input)
    if single and not (args.output or args.output_dir):
        parser.error("give --output (or --output-dir) for the stylized photo")
    if not single and not args.output_dir:
        parser.error("give --output-dir for a folder, list or builtin input")
    out_dir = args.output_dir or os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)

    import numpy as np
    from modify_ms.train.common import MetricsLog, RunCheckpoints, epoch_batches, progress
    from modify_ms.train import stage2

    log = lambda msg: print(msg, file=sys.stderr)
    model = stage2.Stage2Model(cfg, out_dir, log)
    size = model.stage1_cfg.model.loss_size
    # own file names, so an output folder inside a stage-1 run never touches its log or checkpoints
    metrics = MetricsLog(out_dir, name="stylize_metrics.jsonl")
    ckpts = RunCheckpoints(out_dir, cfg.run.keep_checkpoints, subdir="stylize_checkpoints")
    names, source = ([args.input], None) if single else _inputs(args.input)
    written = []

    if cfg.mode == "test-time":
        results = stage2.test_time(model, _photos(names, source, size, args.align), out_dir,
                                   cfg.test_time_steps, log, metrics)
        written = [stage2.output_path(out_dir, n) for n in results]
    elif cfg.mode == "online":
        state = None
        if args.resume and ckpts.latest():
            state = model.resume(ckpts.latest())
        arrivals = _watch(args.input, size, args.align, args.poll) if args.watch else \
            _photos(names, source, size, args.align)
        done = stage2.online(model, arrivals, out_dir, ckpts, cfg.run.ckpt_every, state, log, metrics)
        written = [stage2.output_path(out_dir, n) for n in done]
    else:
        from modify_ms.data.dataset import build_dataset

        start = 0
        if args.resume and ckpts.latest():
            start = int(model.resume(ckpts.latest())["step"])
        data_cfg = cfg.data.__class__(**{**cfg.data.__dict__, "size": size})
        # a resumed offline run restarts the data order at epoch 0 (the weights and Adam state are exact)
        pipeline = build_dataset(data_cfg, log=log)
        batches = (b[0] for b in epoch_batches(pipeline, cfg.offline_steps - start))
        bar = progress(cfg.offline_steps, start, "stage 2 offline")
        stage2.offline(model, batches, cfg.offline_steps, start, ckpts, cfg.run.ckpt_every, log, metrics, bar)
        bar.close()
        for name, x in _photos(names, source, size, args.align):
            path = stage2.output_path(out_dir, name)
            stage2.write_output(path, model.stylize(x)[0])
            written.append(path)
    metrics.close()

    if single and args.output and written:
        os.replace(written[0], args.output) if os.path.abspath(written[0]) != os.path.abspath(args.output) else None
        written = [args.output]
    if args.variants or args.interpolate:
        from modify_ms.data.imageio import save_image_atomic
        from modify_ms.utils.images import make_grid

        rng = np.random.default_rng(cfg.run.seed)
        z_dim = model.nets.remap_net.z_dim
        for name, x in _photos(names[:1] if single else names, source, size, args.align):
            rows = [x]
            if args.variants:
                variants = model.variants(x, rng.standard_normal((args.variants, z_dim)))
                rows.append(variants)
                for k, image in enumerate(variants):  # <stem>_k{i}.png: what evaluate.py's diversity reads
                    path = stage2.output_path(out_dir, name, f"_k{k}")
                    stage2.write_output(path, image)
                    written.append(path)
            if args.interpolate:
                z0, z1 = rng.standard_normal((2, z_dim))
                ts = np.linspace(0, 1, args.interpolate)[:, None]
                rows.append(model.variants(x, (1 - ts) * z0 + ts * z1))
            path = stage2.output_path(out_dir, name, "_variants")
            save_image_atomic(path, make_grid(rows))
            written.append(path)
    for path in written:
        print(path)


if __name__ == "__main__":
    run_main(main)
