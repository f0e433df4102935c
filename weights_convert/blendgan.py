"""Importers of BlendGAN's released files (onion-liu/BlendGAN) and of torchvision's VGG-19.

* ``blendgan.pt``: ``{"g_ema": state_dict, ("latent_avg"), ("truncation")}``, the generator with its
  embedded style encoder (layout ``blendgan_pt``, 228 tensors) -> ``baselines_ms.blendgan.networks.
  BlendGenerator``: ``add_weight`` kept, ``embedder.embedder.feature_extractor.vgg_layers.N.*`` ->
  ``embedder.vgg.features.N.*``, ``embedder.embedder_mlp.K.*`` -> ``embedder.predictor.K.*``,
  ``embedding.K.*`` kept, every rosinality generator key -> ``generator.<key>`` (the StyleGAN2
  importer's rules, FIR kernels checked and consumed), ``latent_avg`` -> ``generator.latent_avg``
  (absent: estimated as the mean of mapping(z) over 4096 z, seed 0, as the official scripts'
  ``mean_latent(4096)``; the sidecar says which). ``truncation`` goes to the sidecar.
* ``psp_encoder.pt``: BlendGAN's face encoder, loaded by ``PSPEncoder`` as ``get_keys(ckpt,
  "encoder")`` (``ckpt["state_dict"]`` when present, the ``encoder.*`` keys) plus ``ckpt["latent_avg"]``
  [18, 512] -> ``GradualStyleEncoder`` with latent_avg added (layout ``blendgan_psp_encoder_pt``).
  Keys the official loader ignores (a full pSp file's ``decoder.*``) are listed in the sidecar.
* ``style_encoder.pt``: the StyleEncoder tensors (``embedder.feature_extractor...``,
  ``embedder_mlp.*``; container unknown: a bare state_dict, or a dict holding exactly one) ->
  ``StyleEncoder``.
* ``vgg19-dcbe5e1e.pth``: torchvision's ``vgg19`` state_dict -> ``VGG19Features`` (``features.N.*``);
  the classifier is consumed (shape-checked), not loaded.

Every source key maps (or is consumed with a check), every target parameter is filled, shapes
are checked (weights_convert.mapping). CLI: ``python -m weights_convert blendgan SRC DST
[--what auto|generator|psp-encoder|style-encoder|vgg19]``.
"""
import os
import re

import numpy as np

from modify_ms.utils.checkpoint import fill_cell, read_arrays, save_arrays

from .errors import CheckpointError
from .mapping import Rule, map_state_dict, target_shapes_of

KINDS = ("generator", "psp-encoder", "style-encoder", "vgg19")
FORMATS = {"generator": "modify_ms.blendgan", "psp-encoder": "modify_ms.blendgan_psp_encoder",
           "style-encoder": "modify_ms.blendgan_style_encoder", "vgg19": "modify_ms.vgg19"}
OPTIONAL = (r".*num_batches_tracked",)
VGG_STAGE_FIRST_CONVS = (0, 5, 10, 19, 28)  # the first conv of each stage: its width
STYLE_INPUT_SIZE = 256  # the official StyleEmbedder's AdaptiveAvgPool2d((256, 256)); not in the weights
VGG_CLASSIFIER = {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,), "classifier.3.weight": (4096, 4096),
                  "classifier.3.bias": (4096,), "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}


# ------------------------------------------------------------------ rule tables
def vgg_rules(src_prefix, dst_prefix):
    """``<src>N.{weight,bias}`` -> ``<dst>N.{weight,bias}`` (torchvision conv indices kept)."""
    return [Rule(re.escape(src_prefix) + r"(\d+)\.(weight|bias)", lambda mm: f"{dst_prefix}{mm.group(1)}.{mm.group(2)}")]


def style_encoder_rules(src_prefix="", dst_prefix=""):
    """The official StyleEncoder's keys -> StyleEncoder's (``vgg.features.N``, ``predictor.K``)."""
    p = re.escape(src_prefix)
    return vgg_rules(src_prefix + "embedder.feature_extractor.vgg_layers.", dst_prefix + "vgg.features.") + [
        Rule(p + r"embedder_mlp\.(\d+)\.(weight|bias)", lambda mm: f"{dst_prefix}predictor.{mm.group(1)}.{mm.group(2)}")]


def generator_rules():
    """blendgan.pt's g_ema (with the top-level latent_avg put beside it) -> BlendGenerator."""
    from .stylegan2 import rosinality_generator_rules

    return ([Rule(r"add_weight", "add_weight"),
             Rule(r"embedding\.(\d+)\.(weight|bias)", r"embedding.\1.\2")]
            + style_encoder_rules("embedder.", "embedder.")
            + rosinality_generator_rules("", "generator."))


def _shape_check(expected):
    def check(value):
        return None if tuple(np.shape(value)) == tuple(expected) else f"shape {tuple(np.shape(value))}, expected {expected}"
    return check


def vgg19_rules():
    rules = vgg_rules("features.", "features.")
    rules += [Rule(re.escape(k), None, check=_shape_check(v)) for k, v in VGG_CLASSIFIER.items()]
    return rules


# ------------------------------------------------------------------ shapes -> architectures
def _prefixed(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def infer_style_encoder_kwargs(sd, prefix=""):
    """{style_dim, n_mlp, vgg_widths} from a StyleEncoder state_dict (keys under ``prefix``)."""
    vgg = prefix + "embedder.feature_extractor.vgg_layers."
    try:
        widths = [int(np.shape(sd[f"{vgg}{i}.weight"])[0]) for i in VGG_STAGE_FIRST_CONVS]
    except KeyError as exc:
        raise ValueError(f"no VGG-19 conv {exc.args[0]!r}: not a BlendGAN style encoder") from None
    mlp = sorted(int(mm.group(1)) for k in sd for mm in [re.fullmatch(re.escape(prefix) + r"embedder_mlp\.(\d+)\.weight", k)]
                 if mm)
    if not mlp or mlp != list(range(len(mlp))):
        raise ValueError("no consecutive embedder_mlp.K layers: not a BlendGAN style encoder")
    style_dim = int(np.shape(sd[f"{prefix}embedder_mlp.{mlp[-1]}.weight"])[0])
    return {"style_dim": style_dim, "n_mlp": len(mlp), "vgg_widths": widths}


def infer_generator_kwargs(sd):
    """BlendGenerator kwargs from g_ema's shapes."""
    from .stylegan2 import infer_generator_kwargs as rosinality_kwargs

    if "add_weight" not in sd:
        raise ValueError("no add_weight: not a BlendGAN generator")
    face = {k: v for k, v in sd.items() if not k.startswith(("add_weight", "embedder.", "embedding."))}
    kwargs = dict(rosinality_kwargs(face, "rosinality"), lr_mlp=0.01)
    enc = infer_style_encoder_kwargs(sd, "embedder.")
    n_latent = int(np.shape(sd["add_weight"])[1])
    if n_latent != 2 * int(np.log2(kwargs["size"])) - 2:
        raise ValueError(f"add_weight has {n_latent} rows, a {kwargs['size']} px generator has "
                         f"{2 * int(np.log2(kwargs['size'])) - 2}")
    if enc["style_dim"] != kwargs["style_dim"]:
        raise ValueError(f"the style encoder gives {enc['style_dim']}-d codes, the generator takes {kwargs['style_dim']}")
    kwargs.update(embedder_mlp=enc["n_mlp"], vgg_widths=enc["vgg_widths"], style_input_size=STYLE_INPUT_SIZE)
    return kwargs


# ------------------------------------------------------------------ reading
def _is_state_dict(x):
    return isinstance(x, dict) and x and all(isinstance(v, np.ndarray) for v in x.values())


def detect_kind(obj):
    """Which released file a loaded checkpoint is (a KINDS entry), None when none."""
    if isinstance(obj, dict) and _is_state_dict(obj.get("g_ema")) and "add_weight" in obj["g_ema"]:
        return "generator"
    sd = obj.get("state_dict") if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj
    if isinstance(sd, dict) and any(str(k).startswith("encoder.styles.") for k in sd):
        return "psp-encoder"
    if _style_encoder_state(obj) is not None:
        return "style-encoder"
    if _is_state_dict(obj) and "features.0.weight" in obj and "embedder_mlp.0.weight" not in obj:
        return "vgg19"
    return None


def _style_encoder_state(obj):
    if _is_state_dict(obj) and "embedder_mlp.0.weight" in obj:
        return obj
    if isinstance(obj, dict):
        found = [v for v in obj.values() if _is_state_dict(v) and "embedder_mlp.0.weight" in v]
        if len(found) == 1:
            return found[0]
    return None


def _built(cls, kwargs, path):
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise CheckpointError(path, f"cannot build the MindSpore model {kwargs}: {exc}")


def _estimate_latent_avg(generator, params, samples=4096, seed=0):
    """Mean of the face mapping over ``samples`` z ~ N(0, I) (the official ``mean_latent(4096)``)."""
    import mindspore as ms

    face = {k[len("generator.style."):]: v for k, v in params.items() if k.startswith("generator.style.")}
    for name, param in generator.generator.style.parameters_and_names():
        param.set_data(ms.Tensor(face[name]))
    z = np.random.default_rng(seed).standard_normal((samples, generator.style_dim)).astype(np.float32)
    return generator.generator.mapping(ms.Tensor(z)).asnumpy().mean(axis=0)


def convert_generator(obj, path):
    from baselines_ms.blendgan.networks import BlendGenerator

    sd = dict(obj["g_ema"])
    has_avg = obj.get("latent_avg") is not None
    if has_avg:
        sd["latent_avg"] = np.asarray(obj["latent_avg"], np.float32).reshape(-1)
    try:
        kwargs = infer_generator_kwargs(sd)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(path, str(exc))
    model = _built(BlendGenerator, kwargs, path)
    shapes = target_shapes_of(model)
    if not has_avg:
        shapes.pop("generator.latent_avg")
    params = map_state_dict(sd, shapes, generator_rules(), optional=OPTIONAL, source_name=f"{path} [g_ema]")
    if not has_avg:
        params["generator.latent_avg"] = _estimate_latent_avg(model, params)
        params = {k: params[k] for k in target_shapes_of(model)}
    truncation = obj.get("truncation")
    meta = {"format": FORMATS["generator"], "module": "baselines_ms.blendgan.networks", "arch": "BlendGenerator",
            "kwargs": kwargs, "latent_avg": "from the checkpoint" if has_avg else
            "estimated: mean of mapping(z) over 4096 z ~ N(0, I), numpy default_rng(0)",
            "truncation": None if truncation is None else float(np.asarray(truncation).reshape(-1)[0]),
            "ignored_source_entries": sorted(str(k) for k in obj if k not in ("g_ema", "latent_avg", "truncation"))}
    return params, meta


def convert_psp_encoder(obj, path):
    from modify_ms.models.psp_encoder import GradualStyleEncoder

    from .psp import encoder_rules, infer_encoder_kwargs

    sd = obj["state_dict"] if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj
    state = {k: v for k, v in sd.items() if str(k).startswith("encoder")}
    ignored = sorted(str(k) for k in sd if not str(k).startswith("encoder"))
    if not isinstance(obj, dict) or obj.get("latent_avg") is None:
        raise CheckpointError(path, "no 'latent_avg' (BlendGAN's PSPEncoder adds ckpt['latent_avg'] to every code)")
    try:
        kwargs = infer_encoder_kwargs(state)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(path, str(exc))
    avg = np.asarray(obj["latent_avg"], np.float32)
    if avg.shape != (kwargs["n_styles"], kwargs["style_dim"]):
        raise CheckpointError(path, f"latent_avg {list(avg.shape)}, the encoder gives "
                                    f"[{kwargs['n_styles']}, {kwargs['style_dim']}]")
    state["latent_avg"] = avg
    model = _built(GradualStyleEncoder, dict(kwargs, latent_avg=avg), path)
    targets = {"encoder." + k: v for k, v in target_shapes_of(model).items() if k != "latent_avg"}
    targets["latent_avg"] = avg.shape
    mapped = map_state_dict(state, targets, encoder_rules() + [Rule(r"latent_avg", "latent_avg")], optional=OPTIONAL,
                            source_name=path)
    params = {(k[len("encoder."):] if k.startswith("encoder.") else k): v for k, v in mapped.items()}
    meta = {"format": FORMATS["psp-encoder"], "module": "modify_ms.models.psp_encoder", "arch": "GradualStyleEncoder",
            "kwargs": kwargs, "ignored_source_entries": ignored[:20], "n_ignored": len(ignored),
            "other_top_level": sorted(str(k) for k in obj if k not in ("state_dict", "latent_avg"))
            if "state_dict" in obj else []}
    return params, meta


def convert_style_encoder(obj, path):
    from baselines_ms.blendgan.networks import StyleEncoder

    sd = _style_encoder_state(obj)
    if sd is None:
        raise CheckpointError(path, "not a BlendGAN style encoder (no state_dict with embedder_mlp.0.weight)")
    try:
        kwargs = dict(infer_style_encoder_kwargs(sd), input_size=STYLE_INPUT_SIZE)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(path, str(exc))
    model = _built(StyleEncoder, kwargs, path)
    params = map_state_dict(sd, target_shapes_of(model), style_encoder_rules(), optional=OPTIONAL, source_name=path)
    return params, {"format": FORMATS["style-encoder"], "module": "baselines_ms.blendgan.networks",
                    "arch": "StyleEncoder", "kwargs": kwargs}


def convert_vgg19(obj, path):
    from modify_ms.models.vgg import VGG19Features

    if not _is_state_dict(obj):
        raise CheckpointError(path, "not a torchvision VGG-19 state_dict")
    try:
        widths = [int(np.shape(obj[f"features.{i}.weight"])[0]) for i in VGG_STAGE_FIRST_CONVS]
    except KeyError as exc:
        raise CheckpointError(path, f"no {exc.args[0]!r}: not a torchvision VGG-19 state_dict") from None
    model = _built(VGG19Features, {"widths": widths}, path)
    params = map_state_dict(obj, target_shapes_of(model), vgg19_rules(), optional=OPTIONAL, source_name=path)
    return params, {"format": FORMATS["vgg19"], "module": "modify_ms.models.vgg", "arch": "VGG19Features",
                    "kwargs": {"widths": widths}}


CONVERTERS = {"generator": convert_generator, "psp-encoder": convert_psp_encoder,
              "style-encoder": convert_style_encoder, "vgg19": convert_vgg19}


def convert_blendgan(src, dst, what="auto"):
    """Convert ``src`` (a KINDS file, detected when ``what`` is 'auto') to ``dst`` + ``dst.json``; returns meta."""
    from .torch_pickle import load_torch_file

    obj = load_torch_file(src, progress=True)
    kind = detect_kind(obj)
    if what != "auto" and kind != what:
        raise CheckpointError(src, f"not a BlendGAN {what} file (it looks like {kind or 'none of ' + ', '.join(KINDS)})")
    if kind is None:
        raise CheckpointError(src, f"not a BlendGAN file ({', '.join(KINDS)}): top-level "
                                   f"{type(obj).__name__} with keys {', '.join(map(str, list(obj)[:6])) if isinstance(obj, dict) else '-'}")
    params, meta = CONVERTERS[kind](obj, src)
    meta.update(source=os.path.abspath(src), kind=kind, num_params=len(params),
                num_values=int(sum(v.size for v in params.values())))
    save_arrays(params, dst, meta)
    return meta


# ------------------------------------------------------------------ loading converted files
def _read(path, kind):
    params, meta = read_arrays(path)
    if meta.get("format") != FORMATS[kind]:
        raise CheckpointError(path, f"not a converted BlendGAN {kind} (sidecar format {meta.get('format')!r}; "
                                    f"convert with: python -m weights_convert blendgan SRC DST)")
    return params, meta


def build_generator(path, style_input_size=None):
    """(BlendGenerator, meta) from a converted blendgan.pt."""
    from baselines_ms.blendgan.networks import BlendGenerator

    params, meta = _read(path, "generator")
    kwargs = dict(meta["kwargs"])
    if style_input_size:
        kwargs["style_input_size"] = int(style_input_size)
    model = BlendGenerator(**kwargs)
    fill_cell(model, params, path)
    return model, meta


def build_psp_encoder(path):
    """(GradualStyleEncoder adding its latent_avg, meta) from a converted psp_encoder.pt."""
    from modify_ms.models.psp_encoder import GradualStyleEncoder

    params, meta = _read(path, "psp-encoder")
    model = GradualStyleEncoder(**meta["kwargs"], latent_avg=params["latent_avg"])
    fill_cell(model, params, path)
    return model, meta


def build_style_encoder(path):
    from baselines_ms.blendgan.networks import StyleEncoder

    params, meta = _read(path, "style-encoder")
    model = StyleEncoder(**meta["kwargs"])
    fill_cell(model, params, path)
    return model, meta


def load_vgg19(cell, path):
    """Fill a VGG19Features from a converted vgg19 file (strict)."""
    params, _meta = _read(path, "vgg19")
    fill_cell(cell, params, path)
    return cell


def detect_layout(sd):
    if "add_weight" in sd and any(k.startswith("embedder.embedder_mlp.") for k in sd):
        return "BlendGAN generator g_ema (blendgan.pt)"
    if "embedder_mlp.0.weight" in sd:
        return "BlendGAN style encoder (style_encoder.pt)"
    return None


HELP = ("BlendGAN blendgan.pt (generator + style encoder), psp_encoder.pt, style_encoder.pt, or torchvision "
        "vgg19-dcbe5e1e.pth -> MindSpore .ckpt (+ .json)")


def add_arguments(parser):
    parser.add_argument("src", help="blendgan.pt, psp_encoder.pt, style_encoder.pt or vgg19-dcbe5e1e.pth")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt); DST.json holds the architecture")
    parser.add_argument("--what", choices=("auto",) + KINDS, default="auto",
                        help="refuse the file unless it is this kind (default: detected)")


def run(args):
    meta = convert_blendgan(args.src, args.dst, args.what)
    print(f"wrote {args.dst}: {meta['arch']}({', '.join(f'{k}={v}' for k, v in meta['kwargs'].items())}) "
          f"from a BlendGAN {meta['kind']} file, {meta['num_params']} params, {meta['num_values']:,} values")
    if meta["kind"] == "generator":
        print(f"  latent_avg: {meta['latent_avg']}; truncation: {meta['truncation']}")
    print(f"wrote {args.dst}.json")
    return 0
