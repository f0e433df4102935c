"""Importer of StarGAN v2's released checkpoints (clovaai/stargan-v2, BASELINES section 6.4).

* ``100000_nets_ema.ckpt`` (celeba_hq: layout ``stargan_v2_celeba_hq_100000_nets_ema_ckpt``, 520
  tensors; afhq: ``stargan_v2_afhq_100000_nets_ema_ckpt``, 177): ``{generator, mapping_network,
  style_encoder (, fan)}`` state dicts, the EMA networks the official sampling and evaluation use;
* ``100000_nets.ckpt`` (the training file, not distributed; layouts ``*_100000_nets_ckpt``): the
  same plus ``discriminator``.

The MindSpore networks (``baselines_ms.stargan2.networks``) carry the official keys as parameter
names, so each network's rule is the identity; ``generator/hpf.filter`` (present when w_hpf > 0)
is a derived constant, checked against [[-1]*3, [-1, 8, -1], [-1]*3] / w_hpf and not loaded. The
configuration is read from the shapes (style and latent sizes, domains, widths, image size from
the encoder's depth, w_hpf from the filter) and written to the sidecar's ``kwargs``.

The celeba_hq file also carries ``fan``, the wing face-alignment network whose heatmaps give the
w_hpf > 0 generator its masks (``baselines_ms.stargan2.wing.FAN``); it is converted too (checked
first against the packaged ``stargan_v2_wing_ckpt`` layout, key for key and shape for shape;
BatchNorm's weight, bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance,
num_batches_tracked dropped). ``wing.ckpt`` itself (``{'state_dict': FAN}``: the official
``--wing_path``) converts to the FAN alone; its other top-level entries are ignored, as the official
loader ignores them, and listed in the sidecar. Anything else at the top level of a networks file,
any key that does not map and any shape that differs is refused.

Output groups: ``generator/``, ``mapping_network/``, ``style_encoder/`` (+ ``discriminator/``,
``fan/``); sidecar ``format`` 'modify_ms.stargan2', ``ema`` (whether G/F/E are the EMA copies).
A wing file: group ``fan/``, format 'modify_ms.stargan2.fan'.
CLI ``stargan2 SRC DST``.
"""
import numpy as np

from .errors import CheckpointError
from .mapping import Rule, expect_value, map_state_dict, target_shapes_of

FORMAT = "modify_ms.stargan2"
FAN_FORMAT = "modify_ms.stargan2.fan"
BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
NETWORKS = ("generator", "mapping_network", "style_encoder")
DISCRIMINATOR = "discriminator"
FAN = "fan"
WING_LAYOUT = "stargan_v2_wing_ckpt"


def hpf_kernel(w_hpf):
    kernel = np.full((3, 3), -1.0, np.float32)
    kernel[1, 1] = 8.0
    return kernel / w_hpf


def network_rules(name, w_hpf):
    """The identity rule (official keys = parameter names), and the generator's derived filter."""
    if name != "generator" or not w_hpf:
        return [Rule(r"(.+)", r"\1")]
    return [Rule(r"(?!hpf\.filter$)(.+)", r"\1"), Rule(r"hpf\.filter", None, check=expect_value(hpf_kernel(w_hpf), 1e-6))]


def fan_target(match):
    """A FAN key's parameter: BatchNorm entries (``bn*``, ``downsample.0``) renamed, the rest as is."""
    module, leaf = match.group(1), match.group(2)
    if module.rsplit(".", 1)[-1].startswith("bn") or module.endswith("downsample.0"):
        return f"{module}.{BN_NAMES[leaf]}"
    return f"{module}.{leaf}"


FAN_RULES = [Rule(r"(.+)\.(weight|bias|running_mean|running_var)", fan_target)]
FAN_OPTIONAL = (r".+\.num_batches_tracked",)


def convert_fan(state, path):
    """{FAN parameter: array} of a wing state dict (checked against the real layout first)."""
    from baselines_ms.stargan2.wing import FAN as FANCell

    check_fan(state, path)
    cell = FANCell()
    return map_state_dict(state, target_shapes_of(cell), FAN_RULES, optional=FAN_OPTIONAL, source_name=f"{path} [fan]")


def _count(sd, pattern):
    import re

    regex = re.compile(pattern)
    return len({regex.match(k).group(1) for k in sd if regex.match(k)})


def infer_kwargs(parts, path):
    """The model configuration of the file, from its shapes."""
    try:
        g, f, e = parts["generator"], parts["mapping_network"], parts["style_encoder"]
        w_hpf = 0.0
        if "hpf.filter" in g:
            w_hpf = float(8.0 / np.asarray(g["hpf.filter"], np.float64)[1, 1])
        down = _count(g, r"encode\.(\d+)\.") - 2
        img_size = 2 ** (down + 4 - (1 if w_hpf > 0 else 0))
        # the widest block of G or E (E goes deeper: a narrow G may never reach max_conv_dim)
        widths = [np.shape(v)[0] for sd in (g, e) for k, v in sd.items() if k.endswith("conv2.weight")]
        kwargs = {"img_size": int(img_size), "style_dim": int(np.shape(f["unshared.0.6.weight"])[0]),
                  "latent_dim": int(np.shape(f["shared.0.weight"])[1]), "max_conv_dim": int(max(widths)),
                  "w_hpf": w_hpf, "first_dim": int(np.shape(g["from_rgb.weight"])[0]),
                  "hidden_dim": int(np.shape(f["shared.0.weight"])[0]),
                  "num_domains": _count(f, r"unshared\.(\d+)\.")}
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise CheckpointError(path, f"not a StarGAN v2 checkpoint: cannot read its configuration ({exc})")
    heads = _count(e, r"unshared\.(\d+)\.")
    if heads != kwargs["num_domains"]:
        raise CheckpointError(path, f"the mapping network has {kwargs['num_domains']} domains, the style encoder {heads}")
    if _count(e, r"shared\.(\d+)\.conv1\.") != int(np.log2(img_size)) - 2:
        raise CheckpointError(path, f"the style encoder's depth does not fit a {img_size} px generator")
    return kwargs


def build_networks(kwargs, with_discriminator=False):
    """{name: MindSpore cell} of a configuration (the sidecar's kwargs)."""
    from baselines_ms.stargan2 import networks as net

    k = dict(kwargs)
    domains = k.pop("num_domains")
    cells = {"generator": net.Generator(k["img_size"], k["style_dim"], k["max_conv_dim"], k["w_hpf"], k["first_dim"]),
             "mapping_network": net.MappingNetwork(k["latent_dim"], k["style_dim"], domains, k["hidden_dim"]),
             "style_encoder": net.StyleEncoder(k["img_size"], k["style_dim"], domains, k["max_conv_dim"], k["first_dim"])}
    if with_discriminator:
        cells[DISCRIMINATOR] = net.Discriminator(k["img_size"], domains, k["max_conv_dim"], k["first_dim"])
    return cells


def check_fan(fan, path):
    """The ``fan`` entry must be the wing network's layout, key for key and shape for shape."""
    from modify_ms.assets import key_manifests

    layout = key_manifests("baseline")[WING_LAYOUT]["keys"]
    want = {k[len("state_dict/"):]: tuple(v) for k, v in layout.items()}
    have = {str(k): tuple(np.shape(v)) for k, v in fan.items()}
    if want != have:
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        shapes = sorted(k for k in set(want) & set(have) if want[k] != have[k])
        raise CheckpointError(path, f"[fan] is not the wing FAN layout ({WING_LAYOUT}): {len(missing)} keys "
                                    f"missing, {len(extra)} unknown, {len(shapes)} shapes differ "
                                    f"(e.g. {(missing + extra + shapes)[:3]})")


def stargan2_parts(obj, path):
    if not isinstance(obj, dict) or not all(isinstance(obj.get(n), dict) for n in NETWORKS):
        top = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(path, f"not a StarGAN v2 checkpoint: needs the state dicts {', '.join(NETWORKS)} "
                                    f"(top level: {top})")
    unknown = [str(k) for k in obj if k not in NETWORKS + (DISCRIMINATOR, FAN)]
    if unknown:
        raise CheckpointError(path, f"unknown top-level entries {unknown} (a StarGAN v2 file holds "
                                    f"{', '.join(NETWORKS + (DISCRIMINATOR, FAN))})")
    return obj


def convert_stargan2(src, dst, progress=True):
    """``*_nets_ema.ckpt`` / ``*_nets.ckpt`` -> MindSpore checkpoint ``dst`` (+ ``dst.json``); returns the meta."""
    from modify_ms.utils.checkpoint import save_arrays

    from .torch_pickle import load_torch_file

    obj = load_torch_file(src, progress=progress)
    if is_wing_file(obj):
        return convert_wing(obj, src, dst)
    parts = stargan2_parts(obj, src)
    kwargs = infer_kwargs(parts, src)
    has_d = DISCRIMINATOR in parts
    arrays = {}
    if FAN in parts:
        arrays.update({f"{FAN}/{k}": v for k, v in convert_fan(parts[FAN], src).items()})
    elif kwargs["w_hpf"] > 0:
        raise CheckpointError(src, "a w_hpf > 0 generator without the 'fan' entry the official code saves with it")
    for name, cell in build_networks(kwargs, has_d).items():
        mapped = map_state_dict(parts[name], target_shapes_of(cell), network_rules(name, kwargs["w_hpf"]),
                                source_name=f"{src} [{name}]")
        arrays.update({f"{name}/{k}": v for k, v in mapped.items()})
    meta = {"format": FORMAT, "module": "baselines_ms.stargan2.networks", "kwargs": kwargs, "ema": not has_d,
            "networks": list(NETWORKS) + ([DISCRIMINATOR] if has_d else []) + ([FAN] if FAN in parts else []),
            "num_params": len(arrays), "num_values": int(sum(a.size for a in arrays.values()))}
    save_arrays(arrays, dst, meta)
    return meta


def is_wing_file(obj):
    return isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and not any(n in obj for n in NETWORKS)


def convert_wing(obj, src, dst):
    """wing.ckpt ({'state_dict': FAN, ...}) -> the FAN alone."""
    from modify_ms.utils.checkpoint import save_arrays

    arrays = {f"{FAN}/{k}": v for k, v in convert_fan(obj["state_dict"], src).items()}
    meta = {"format": FAN_FORMAT, "module": "baselines_ms.stargan2.wing", "networks": [FAN],
            "ignored_source_entries": sorted(str(k) for k in obj if k != "state_dict"),
            "num_params": len(arrays), "num_values": int(sum(a.size for a in arrays.values()))}
    save_arrays(arrays, dst, meta)
    return meta


HELP = ("StarGAN v2 100000_nets_ema.ckpt (celeba_hq with its FAN / afhq), _nets.ckpt (with the discriminator) "
        "or wing.ckpt (the FAN) -> MindSpore .ckpt")


def add_arguments(parser):
    parser.add_argument("src", help="official StarGAN v2 checkpoint (expr/checkpoints/<dataset>/100000_nets_ema.ckpt)")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt); DST.json holds the configuration")


def run(args):
    meta = convert_stargan2(args.src, args.dst)
    if meta["format"] == FAN_FORMAT:
        print(f"wrote {args.dst}: StarGAN v2 FAN (wing), {meta['num_params']} params, {meta['num_values']:,} values")
        print(f"wrote {args.dst}.json")
        return 0
    kwargs = ", ".join(f"{k}={v}" for k, v in meta["kwargs"].items())
    print(f"wrote {args.dst}: StarGAN v2 ({kwargs}), networks {', '.join(meta['networks'])} "
          f"({'EMA' if meta['ema'] else 'trained'} G/F/E), {meta['num_params']} params, {meta['num_values']:,} values")
    print(f"wrote {args.dst}.json")
    return 0


def detect_layout(sd):
    """For ``inspect``: a StarGAN v2 generator state dict."""
    if "from_rgb.weight" in sd and any(k.startswith("decode.0.norm1.fc") for k in sd):
        return "StarGAN v2 generator (weights_convert stargan2)"
    return None
