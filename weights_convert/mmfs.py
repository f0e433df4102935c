"""Importer of MMFS's released files (mmfs-paper/MMFS; ../BASELINES 5.4).

``phase2_pretrain_90000.pth`` (layout ``mmfs_phase2_pth``), ``phase3_pretrain_10000.pth`` and the
one- / zero-shot files (``example_ref0*.pth``, ``pop_art.pth``, ``watercolor_painting.pth``; layout
``mmfs_phase3_phase4_pth``) are one dict written by ``save_networks``: {G_model, G_ema_model,
D_model, optimizer_0, optimizer_1, scheduler_0, scheduler_1, epoch, total_iters, metric
(, best_val_loss)}. Read: ``G_ema_model`` (``--which G_model`` for the trained, non-averaged one)
-> ``baselines_ms.mmfs.networks.Stylizer`` (its parameter names are the official keys: identity
rules, rosinality's FIR kernels consumed with a value check), ``clip_mapper.*`` when present ->
the Stylizer's ``clip_mapper`` (the names ``baselines_ms.mmfs.clip_mapper.TORCH_KEY_RULES`` gives,
identity without them), and ``D_model`` -> the library's rosinality
Discriminator (the StyleGAN2 importer's rules). The optimizer / scheduler states and the counters
are not read (the sidecar lists them). Output groups ``stylizer_ema/`` and ``discriminator/``,
what an MMFS run's checkpoint holds, so trainers and the ``mmfs`` stylizer read both alike.

The architecture comes from the shapes: ngf, style_dim, n_mlp, the decoder channels (hence
channel_multiplier / channel_max at ``--size``, 512 by default: the weights do not fix it),
the clip mapper's tokens, width, layers, feed-forward width (``--clip-heads``: 8, not in the
weights). CLI: ``python -m weights_convert mmfs SRC DST [--which G_ema_model|G_model] [--size N]``.
"""
import dataclasses
import os
import re

import numpy as np

from modify_ms.utils.checkpoint import fill_cell, read_arrays, save_arrays

from .errors import CheckpointError
from .mapping import Rule, map_state_dict, target_shapes_of
from .stylegan2 import fir_kernel, infer_discriminator_kwargs, rosinality_discriminator_rules

FORMAT = "modify_ms.mmfs"
WHICH = ("G_ema_model", "G_model")
TOP_LEVEL = ("G_model", "G_ema_model", "D_model")
NOT_READ = ("optimizer_0", "optimizer_1", "scheduler_0", "scheduler_1", "epoch", "total_iters", "metric",
            "best_val_loss")
CLIP_HEADS = 8  # nn.TransformerEncoderLayer(d_model=512, nhead=8): not recoverable from the weights


def _expect_kernel(gain):
    from .mapping import expect_value

    return expect_value(fir_kernel(gain), atol=1e-6)


def clip_mapper_rules():
    """``clip_mapper.*``: the clip mapper module's ``TORCH_KEY_RULES`` ((regex, template) pairs on the
    keys after ``clip_mapper.``) when it declares them, else identity names."""
    try:
        from baselines_ms.mmfs import clip_mapper
    except ImportError:
        pairs = None
    else:
        pairs = getattr(clip_mapper, "TORCH_KEY_RULES", None)
    if not pairs:
        return [Rule(r"(clip_mapper\..+)", r"\1")]
    return [Rule(r"clip_mapper\." + pattern, "clip_mapper." + template) for pattern, template in pairs]


def stylizer_rules():
    """Identity for every Stylizer parameter; blur kernels (encoder downsampling: gain 1; decoder
    upsampling and the to_rgb skips: gain 4) consumed and checked; the clip mapper's rules."""
    body = (r"encoder\.\d+\.(?:\d+\.(?:weight|bias)|(?:conv1|conv2|skip)\.\d+\.(?:weight|bias))"
            r"|mapping_z\.\d+\.(?:weight|bias)"
            r"|decoder(?:0|\d[ab])\.(?:conv\.weight|conv\.modulation\.(?:weight|bias)|noise\.weight|activate\.bias)"
            r"|to_rgb\d\.(?:bias|conv\.weight|conv\.modulation\.(?:weight|bias))")
    return clip_mapper_rules() + [Rule(f"({body})", r"\1"),
            Rule(r"encoder\.\d+\.(?:conv2|skip)\.0\.kernel", None, check=_expect_kernel(1.0)),
            Rule(r"decoder\d+a\.conv\.blur\.kernel", None, check=_expect_kernel(4.0)),
            Rule(r"to_rgb\d+\.upsample\.kernel", None, check=_expect_kernel(4.0))]


def _need(sd, key, path):
    if key not in sd:
        raise CheckpointError(path, f"no {key!r}: not an MMFS Stylizer state dict")
    return np.shape(sd[key])


def infer_stylizer_config(sd, size=512, clip_heads=CLIP_HEADS, path="checkpoint"):
    """StylizerConfig from a G state dict's shapes (module doc)."""
    from baselines_ms.mmfs.config import ClipMapperConfig, StylizerConfig
    from modify_ms.models.stylegan2 import channel_table

    ngf = int(_need(sd, "encoder.0.0.weight", path)[0])
    style_dim = int(_need(sd, "mapping_z.1.weight", path)[0])
    n_mlp = len([k for k in sd if re.fullmatch(r"mapping_z\.\d+\.weight", k)])
    channels = [int(_need(sd, "decoder0.conv.weight", path)[1])] + \
               [int(_need(sd, f"decoder{k}b.conv.weight", path)[1]) for k in range(1, 5)]
    res = [size // 2 ** (4 - k) for k in range(5)]
    channel_max = max(channels)
    fits = [cm for cm in range(1, 9)
            if [channel_table(cm, channel_max)[r] for r in res] == channels]
    if not fits:
        raise CheckpointError(path, f"decoder channels {channels} are no StyleGAN2 channel table at size {size} "
                                    f"(give --size)")
    mapper = None
    if "clip_mapper.position_embedding" in sd:
        n_tokens, dim = (int(v) for v in sd["clip_mapper.position_embedding"].shape)
        layers = {int(m[1]) for k in sd for m in [re.match(r"clip_mapper\.transformer\.layers\.(\d+)\.", k)] if m}
        ff = int(_need(sd, "clip_mapper.transformer.layers.0.linear1.weight", path)[0])
        mapper = ClipMapperConfig(n_tokens=n_tokens, dim=dim, n_layers=len(layers), n_heads=int(clip_heads),
                                  ff_dim=ff)
    try:
        cfg = StylizerConfig(size=int(size), ngf=ngf, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=fits[0],
                             channel_max=channel_max, clip_mapper=mapper)
        cfg.validate()
        if mapper is not None:
            mapper.validate()
    except ValueError as exc:
        raise CheckpointError(path, f"the shapes give no valid Stylizer: {exc}") from None
    return cfg


def convert_stylizer_state(sd, size=512, clip_heads=CLIP_HEADS, source_name="G"):
    """(params {Stylizer name: array}, StylizerConfig) of a G / G_ema state dict (strict)."""
    from baselines_ms.mmfs.networks import Stylizer

    cfg = infer_stylizer_config(sd, size, clip_heads, source_name)
    try:
        network = Stylizer(cfg)
    except ImportError:
        raise CheckpointError(source_name, "has clip_mapper tensors, and baselines_ms/mmfs/clip_mapper.py "
                                           "(CLIPFeats2Wplus) is not installed") from None
    return map_state_dict(sd, target_shapes_of(network), stylizer_rules(), source_name=source_name), cfg


def convert_discriminator_state(sd, size, source_name="D"):
    from modify_ms.models.stylegan2 import Discriminator

    try:
        kwargs = infer_discriminator_kwargs(sd, "rosinality")
    except ValueError as exc:
        raise CheckpointError(source_name, str(exc)) from None
    if kwargs["size"] != size:
        raise CheckpointError(source_name, f"a {kwargs['size']} px discriminator for a {size} px Stylizer")
    params = map_state_dict(sd, target_shapes_of(Discriminator(**kwargs)), rosinality_discriminator_rules(),
                            source_name=source_name)
    return params, kwargs


def read_release(path):
    """The released dict (module doc), its three state dicts checked to be dicts of tensors."""
    from .torch_pickle import load_torch_file

    obj = load_torch_file(path, progress=True)
    if not isinstance(obj, dict) or not set(TOP_LEVEL) <= set(obj):
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(path, f"not an MMFS checkpoint (expected {', '.join(TOP_LEVEL)}; found {keys})")
    unknown = sorted(set(map(str, obj)) - set(TOP_LEVEL) - set(NOT_READ))
    if unknown:
        raise CheckpointError(path, f"unexpected top-level entries {', '.join(unknown[:4])} (an MMFS save_networks "
                                    f"file has {', '.join(TOP_LEVEL + NOT_READ)})")
    for key in TOP_LEVEL:
        sd = obj[key]
        if not isinstance(sd, dict) or not sd or not all(isinstance(v, np.ndarray) for v in sd.values()):
            raise CheckpointError(path, f"{key} is not a state dict of tensors")
    return obj


def convert_mmfs(src, dst, which="G_ema_model", size=512, clip_heads=CLIP_HEADS):
    """``src`` -> ``dst`` (+ ``dst.json``); returns the sidecar."""
    obj = read_release(src)
    g_params, cfg = convert_stylizer_state(obj[which], size, clip_heads, source_name=f"{src} [{which}]")
    d_params, d_kwargs = convert_discriminator_state(obj["D_model"], size, source_name=f"{src} [D_model]")
    params = {f"stylizer_ema/{k}": v for k, v in g_params.items()}
    params.update({f"discriminator/{k}": v for k, v in d_params.items()})
    meta = {"format": FORMAT, "module": "baselines_ms.mmfs.networks", "arch": "Stylizer",
            "stylizer": dataclasses.asdict(cfg), "discriminator": d_kwargs, "which": which,
            "source": os.path.abspath(src), "not_read": sorted(str(k) for k in obj if k not in (which, "D_model")),
            "num_params": len(params), "num_values": int(sum(v.size for v in params.values()))}
    save_arrays(params, dst, meta)
    return meta


# ------------------------------------------------------------------ loading converted files
def stylizer_config_of(meta):
    from baselines_ms.mmfs.config import ClipMapperConfig, StylizerConfig

    kwargs = dict(meta["stylizer"])
    if kwargs.get("clip_mapper") is not None:
        kwargs["clip_mapper"] = ClipMapperConfig(**kwargs["clip_mapper"])
    return StylizerConfig(**kwargs)


def build_stylizer(path):
    """(Stylizer filled from ``stylizer_ema/``, an MMFSConfig whose model.stylizer is its config)."""
    from baselines_ms.mmfs.config import MMFSConfig, MMFSModel
    from baselines_ms.mmfs.networks import Stylizer

    arrays, meta = read_arrays(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(path, f"not a converted MMFS file (sidecar format {meta.get('format')!r}; convert "
                                    f"with: python -m weights_convert mmfs SRC DST)")
    scfg = stylizer_config_of(meta)
    network = Stylizer(scfg)
    fill_cell(network, {k: v for k, v in arrays.items() if k.startswith("stylizer_ema/")}, path,
              prefix="stylizer_ema/")
    return network, MMFSConfig(model=MMFSModel(stylizer=scfg))


def detect_layout(sd):
    if "encoder.0.0.weight" in sd and "decoder0.conv.weight" in sd and "mapping_z.1.weight" in sd:
        return "MMFS Stylizer" + (" with clip_mapper" if "clip_mapper.position_embedding" in sd else "")
    return None


HELP = ("MMFS phase2_pretrain_90000.pth / phase3_pretrain_10000.pth / one- and zero-shot .pth -> MindSpore "
        "Stylizer + discriminator (.ckpt + .json)")


def add_arguments(parser):
    parser.add_argument("src", help="an MMFS release file, e.g. phase2_pretrain_90000.pth")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt); DST.json holds the architecture")
    parser.add_argument("--which", choices=WHICH, default="G_ema_model",
                        help="the Stylizer to read (default G_ema_model, what inference uses)")
    parser.add_argument("--size", type=int, default=512, help="the Stylizer's resolution (default 512)")
    parser.add_argument("--clip-heads", type=int, default=CLIP_HEADS,
                        help="attention heads of the clip mapper (default 8, the official nhead)")


def run(args):
    meta = convert_mmfs(args.src, args.dst, args.which, args.size, args.clip_heads)
    s = meta["stylizer"]
    print(f"wrote {args.dst}: Stylizer(size={s['size']}, ngf={s['ngf']}, style_dim={s['style_dim']}, "
          f"clip_mapper={'yes' if s['clip_mapper'] else 'no'}) from {meta['which']} + Discriminator("
          f"{meta['discriminator']['size']}), {meta['num_params']} params, {meta['num_values']:,} values")
    print(f"wrote {args.dst}.json")
    return 0
