"""Render an image grid from a StyleGAN2 generator.

    # a converted checkpoint (python -m weights_convert stylegan2 SRC G.ckpt; G.ckpt.json holds the architecture)
    python tools/render_stylegan2.py --ckpt G.ckpt --seeds 0-7 --truncation 0.7 --out grid.png
    # random weights (no download needed): a small generator
    python tools/render_stylegan2.py --random --size 64 --channel-max 64 --n 8 --seed 0 --out grid.png

z is drawn on the host with ``np.random.default_rng``: with ``--seeds`` image i uses
``default_rng(seeds[i])`` (its z, then its noise), so an image depends on its seed
alone; with ``--n N --seed S`` one ``default_rng(S)`` draws all N z, then all noise.
``--truncation t`` renders w' = w_avg + t (w - w_avg) around the generator's
``latent_avg``. ``--noise const`` uses the noise maps saved with the weights
(``noises.noise_i``), ``random`` draws fresh ones. The grid is written atomically
and the path printed. Bad input is a one-line error and exit code 2.
"""
import os
import sys
import time

from . import exit_now

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only (must precede its import)


class UsageError(ValueError):
    """Bad command-line values; printed as one line."""


def parse_seeds(text):
    """'0-7' or '1,4,10-12' -> [ints]."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise UsageError(f"--seeds: empty range '{part}'")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except UsageError:
            raise
        except ValueError:
            raise UsageError(f"--seeds: '{part}' is not a seed or a range like 0-7") from None
    if not seeds:
        raise UsageError("--seeds: no seeds given")
    if any(s < 0 for s in seeds):
        raise UsageError("--seeds: seeds must be >= 0")
    return seeds


def parse_args(argv=None):
    from modify_ms.cli import ToolParser

    p = ToolParser(description="Render an image grid from a StyleGAN2 generator.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="converted generator checkpoint (.ckpt with its .json sidecar)")
    src.add_argument("--random", action="store_true", help="random weights (set --size, --channel-max ...)")
    p.add_argument("--size", type=int, default=64, help="--random: resolution (default 64)")
    p.add_argument("--channel-max", type=int, default=64, help="--random: channel cap (default 64)")
    p.add_argument("--channel-multiplier", type=int, default=2, help="--random: channel multiplier (default 2)")
    p.add_argument("--style-dim", type=int, default=512, help="--random: style dim (default 512)")
    p.add_argument("--n-mlp", type=int, default=8, help="--random: mapping layers (default 8)")
    p.add_argument("--weights-seed", type=int, default=0, help="--random: seed of the random weights")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", help="one image per seed: '0-7', '1,5,9-11'")
    which.add_argument("--n", type=int, help="number of images drawn from one --seed")
    p.add_argument("--seed", type=int, default=0, help="with --n: the seed of all z and noise (default 0)")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi around latent_avg (1 = none)")
    p.add_argument("--noise", choices=("const", "random"), default="const",
                   help="const: the noise maps saved with the weights; random: fresh per image")
    p.add_argument("--out", default="grid.png", help="output image (.png/.jpg; default grid.png)")
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default: about sqrt(N))")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--mode", choices=("graph", "pynative"), default="graph",
                   help="MindSpore execution mode (graph compiles once, then runs faster)")
    args = p.parse_args(argv)
    if args.n is None and args.seeds is None:
        args.seeds = "0-7"
    if args.n is not None and args.n < 1:
        raise UsageError("--n must be >= 1")
    if args.batch < 1:
        raise UsageError("--batch must be >= 1")
    if args.nrow is not None and args.nrow < 1:
        raise UsageError("--nrow must be >= 1")
    if args.truncation < 0:
        raise UsageError("--truncation must be >= 0")
    from modify_ms.utils.paths import OutputPathError, check_output_file

    try:  # not a folder, a writable image extension, not the checkpoint read
        check_output_file(args.out, [args.ckpt, (args.ckpt or "") + ".json"])
    except OutputPathError as exc:
        raise UsageError(str(exc)) from None
    return args


def host_latents(gen, args):
    """(z [N, S], per-layer noise list of [N, 1, r, r] or None, labels) drawn with numpy."""
    import numpy as np

    shapes = gen.noise_shapes(1)
    if args.seeds is not None:
        seeds = parse_seeds(args.seeds)
        zs, noises = [], []
        for s in seeds:
            rng = np.random.default_rng(s)
            zs.append(rng.standard_normal(gen.style_dim, dtype=np.float32))
            if args.noise == "random":
                noises.append([rng.standard_normal(sh, dtype=np.float32) for sh in shapes])
        z = np.stack(zs)
        noise = None if not noises else [np.concatenate(layer) for layer in zip(*noises)]
        return z, noise, f"seeds {args.seeds}"
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.n, gen.style_dim), dtype=np.float32)
    noise = None
    if args.noise == "random":
        noise = [rng.standard_normal((args.n,) + sh[1:], dtype=np.float32) for sh in shapes]
    return z, noise, f"{args.n} images from seed {args.seed}"


def build_generator(args):
    """(Generator, description). Raises CheckpointFileError/MappingError for a bad --ckpt."""
    import numpy as np

    if args.ckpt:
        from modify_ms.utils.checkpoint import CheckpointFileError
        from weights_convert.stylegan2 import build_from_checkpoint

        if not os.path.isfile(args.ckpt):
            raise CheckpointFileError(f"{args.ckpt}: no such file")
        gen, meta = build_from_checkpoint(args.ckpt)
        if meta.get("arch") != "Generator":
            raise CheckpointFileError(f"{args.ckpt}: is a {meta.get('arch', 'unknown network')}, not a Generator")
        return gen, f"{args.ckpt} ({meta.get('which', '?')}, size {gen.size})"

    import mindspore as ms
    from modify_ms.models.stylegan2 import Generator

    try:
        np.random.seed(args.weights_seed)  # the layers initialise from numpy's global generator
        gen = Generator(args.size, style_dim=args.style_dim, n_mlp=args.n_mlp,
                        channel_multiplier=args.channel_multiplier, channel_max=args.channel_max)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.truncation != 1.0:  # random weights carry no latent_avg: estimate it like rosinality's mean_latent
        z = np.random.default_rng(12345).standard_normal((1024, gen.style_dim)).astype(np.float32)
        gen.latent_avg.set_data(ms.Tensor(gen.mapping(ms.Tensor(z)).asnumpy().mean(axis=0)))
    return gen, f"random weights (size {gen.size}, channel_max {gen.channel_max}, seed {args.weights_seed})"


def render(gen, z, noise, truncation, batch):
    """Images [N, 3, R, R] float32 in about [-1, 1]; every pass has the same batch (one compile)."""
    import numpy as np
    import mindspore as ms
    from mindspore import nn

    class Render(nn.Cell):
        def __init__(self, g, psi):
            super().__init__()
            self.g, self.psi = g, psi

        def construct(self, z, *noise):
            w = self.g.mapping(z)
            if self.psi != 1.0:
                w = self.g.truncate(w, self.psi)
            return self.g(w, noise if noise else None)

    net = Render(gen, truncation)
    n = z.shape[0]
    batch = min(batch, n)
    out = []
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        zb = np.zeros((batch, z.shape[1]), np.float32)
        zb[:stop - start] = z[start:stop]
        nb = []
        for layer in noise or ():
            arr = np.zeros((batch,) + layer.shape[1:], np.float32)
            arr[:stop - start] = layer[start:stop]
            nb.append(ms.Tensor(arr))
        out.append(net(ms.Tensor(zb), *nb).asnumpy()[:stop - start])
    return np.concatenate(out)


def main(argv=None):
    try:
        args = parse_args(argv)
        import math

        import mindspore as ms
        from modify_ms.data.imageio import save_image_atomic
        from modify_ms.utils.images import make_grid
        from modify_ms.utils.checkpoint import CheckpointFileError
        from weights_convert.errors import MappingError

        ms.set_context(mode=ms.GRAPH_MODE if args.mode == "graph" else ms.PYNATIVE_MODE, device_target="CPU")
        try:
            gen, what = build_generator(args)
        except (CheckpointFileError, MappingError) as exc:
            raise UsageError(str(exc)) from None
        z, noise, which = host_latents(gen, args)
        t0 = time.perf_counter()
        images = render(gen, z, noise, args.truncation, args.batch)
        seconds = time.perf_counter() - t0
        nrow = args.nrow or math.ceil(math.sqrt(len(images)))
        try:
            save_image_atomic(args.out, make_grid([images[i:i + nrow] for i in range(0, len(images), nrow)]))
        except OSError as exc:
            raise UsageError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    print(f"{what}: {which}, truncation {args.truncation}, noise {args.noise}, "
          f"{len(images)} images at {images.shape[-1]} px in {seconds:.1f} s")
    print(f"wrote {os.path.abspath(args.out)}")
    return 0


def cli():
    """``modify-render`` / ``python tools/render_stylegan2.py``: the exit code, without MindSpore's teardown noise."""
    exit_now(main())


if __name__ == "__main__":
    cli()
