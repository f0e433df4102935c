"""StyleGAN2 importers: rosinality ``.pt`` and NVlabs stylegan2-ada ``.pkl`` -> MindSpore.

The target is :mod:`modify_ms.models.stylegan2`, whose parameter names ARE
rosinality's state_dict keys, except that

* the FIR blur kernels rosinality keeps as buffers are constants of the
  MindSpore model. The importer consumes them and checks they equal the
  derived kernel ``K = outer([1,3,3,1]) / 64``: ``K * 4`` for every
  upsampling path (``convs.<even>.conv.blur.kernel``,
  ``to_rgbs.*.upsample.kernel``), ``K`` for D's downsampling paths
  (``convs.*.conv2.0.kernel``, ``convs.*.skip.0.kernel``). A different kernel
  is a MappingError (the model could not reproduce it);
* the generator has a non-trainable ``latent_avg`` [style_dim]: taken from the
  checkpoint's top-level ``latent_avg`` (rosinality, for ``g_ema`` only: it
  is g_ema's average) or ``mapping.w_avg`` (ADA); when there is none
  (rosinality training checkpoints, ``--which g``) it is
  ESTIMATED as the mean of ``mapping(z)`` over 4096 z ~ N(0, I) drawn with
  seed 0, like rosinality's ``mean_latent(4096)``, and the sidecar says so.

Rosinality files: ``{'g_ema', 'latent_avg'}`` (converted official weights),
training checkpoints ``{'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args',
...}`` (optimizer states, args and counters are ignored and listed in the
sidecar), or a bare G or D state_dict.

NVlabs stylegan2-ada-pytorch (``G``/``G_ema``/``D`` of a network pickle,
read by :mod:`weights_convert.nvlabs_pkl`) maps onto the same names:
``mapping.fcK`` -> ``style.(K+1)``, ``mapping.w_avg`` -> ``latent_avg``,
``synthesis.b4.const`` [C,4,4] -> ``input.input`` [1,C,4,4]; per layer
(``b4.conv1`` -> ``conv1``, ``b{r}.conv0/conv1`` -> ``convs.{2k}/{2k+1}``,
k = log2(r) - 3): ``weight`` [O,I,k,k] -> ``conv.weight`` [1,O,I,k,k],
``affine`` -> ``conv.modulation``, ``noise_strength`` [] -> ``noise.weight``
[1], ``bias`` -> ``activate.bias``, ``noise_const`` [r,r] ->
``noises.noise_i`` [1,1,r,r] (order b4.conv1, b8.conv0, b8.conv1, b16.conv0,
...); ``torgb`` -> ``to_rgb1`` / ``to_rgbs.k`` with bias [3] -> [1,3,1,1]. D:
``b{size}.fromrgb`` -> ``convs.0`` (1x1 conv + fused lrelu), ``b{r}.conv0``
-> ``convs.j.conv1``, ``conv1`` -> ``convs.j.conv2``, ``skip`` ->
``convs.j.skip`` (j = log2(size/r) + 1), ``b4.conv`` -> ``final_conv``,
``b4.fc`` / ``b4.out`` -> ``final_linear.0`` / ``.1``; every
``resample_filter`` must equal ``K``. D's minibatch stddev comes from the
pickle's recorded ``D`` init kwargs, ``epilogue_kwargs.mbstd_group_size``
(8 in the paper256/paper512 configs, None = the whole batch) and
``mbstd_num_channels`` -> ``Discriminator(stddev_group, stddev_feat)`` in the
sidecar kwargs; a key the pickle does not record takes NVlabs'
``DiscriminatorEpilogue`` default (4, 1), and ``mbstd_num_channels`` must
agree with ``b4.conv.weight``'s input channels. The group at batch N is
min(group, N), as NVlabs'; a batch it does not divide is a ValueError
(NVlabs' reshape fails there too). Weights need no rescaling: both keep raw
weights and apply ``1/sqrt(fan_in)`` (and lr multipliers) in forward.

Known ADA-vs-rosinality differences NOT reproduced (renders differ slightly):

* ADA runs the top ``num_fp16_res`` resolutions in float16 with
  ``conv_clamp=256`` (activations clamped to +-256, ToRGB included); the
  MindSpore model runs float32 without clamping.
* ADA demodulates with ``rsqrt(sum(w**2) + 1e-8)`` on the UNSCALED weights,
  rosinality on weights scaled by ``1/sqrt(fan_in)``: the epsilon weighs
  ``fan_in`` times more here (negligible for trained weights).
* The mapping lr multiplier is assumed 0.01 (ADA's and rosinality's default);
  conditional models (``mapping.embed``, ``c_dim > 0``) and z_dim != w_dim are
  refused by the strict mapping.

Public API
----------
``rosinality_generator_rules(src_prefix='', dst_prefix='') -> list[Rule]``
``rosinality_discriminator_rules(src_prefix='', dst_prefix='') -> list[Rule]``
``ada_generator_rules() -> list[Rule]``, ``ada_discriminator_rules(size) -> list[Rule]``
``infer_generator_kwargs(sd, layout) -> dict``, ``infer_discriminator_kwargs(sd, layout, init_kwargs=None) -> dict``
``ada_minibatch_std_kwargs(init_kwargs, sd=None) -> {'stddev_group', 'stddev_feat'}``
``read_stylegan2(path, which=None, progress=False) -> StyleGAN2Source``
``convert_stylegan2(src, dst, which=None, size=None, channel_multiplier=None, progress=False) -> dict``
    Writes ``dst`` (.ckpt) + ``dst.json``; returns the sidecar meta.
``build_from_checkpoint(path) -> (cell, meta)``
    Rebuild the Generator/Discriminator described by a converted checkpoint.
``detect_layout(state_dict) -> str | None`` (used by ``inspect``)
``HELP``, ``add_arguments(parser)``, ``run(args)``: the ``stylegan2`` subcommand.
"""
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from modify_ms.utils.checkpoint import fill_cell, read_arrays, save_arrays

from .errors import CheckpointError
from .mapping import Rule, expect_value, map_state_dict

__all__ = [
    "fir_kernel",
    "rosinality_generator_rules",
    "rosinality_discriminator_rules",
    "ada_generator_rules",
    "ada_discriminator_rules",
    "infer_generator_kwargs",
    "infer_discriminator_kwargs",
    "ada_minibatch_std_kwargs",
    "read_stylegan2",
    "convert_stylegan2",
    "build_from_checkpoint",
    "detect_layout",
    "StyleGAN2Source",
]

WHICH = ("g_ema", "g", "d")
ADA_NAMES = {"g_ema": "G_ema", "g": "G", "d": "D"}
LATENT_AVG_SAMPLES = 4096
ADA_MBSTD_DEFAULTS = {"mbstd_group_size": 4, "mbstd_num_channels": 1}  # NVlabs DiscriminatorEpilogue
OPTIONAL = (r".*num_batches_tracked",)


def fir_kernel(gain=1.0):
    """outer([1,3,3,1]) normalised to sum 1, times ``gain`` (4 on upsampling paths)."""
    k = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0])
    return k / k.sum() * gain


def _keep(src_prefix, dst_prefix, body):
    """Rule mapping ``src_prefix + body`` to ``dst_prefix + body`` (body is a regex)."""
    return Rule(re.escape(src_prefix) + f"({body})", lambda m: dst_prefix + m.group(1))


# ------------------------------------------------------------------ rosinality
def rosinality_generator_rules(src_prefix="", dst_prefix=""):
    """Rules for a rosinality ``Generator`` state_dict (any size) plus ``latent_avg``.

    ``src_prefix``/``dst_prefix`` let other importers reuse them, e.g. pSp's
    ``decoder.`` keys: ``rosinality_generator_rules('decoder.', 'decoder.')``.
    """
    p = re.escape(src_prefix)
    layer = r"(?:conv1|convs\.\d+)"
    rgb = r"(?:to_rgb1|to_rgbs\.\d+)"
    return [
        _keep(src_prefix, dst_prefix, r"style\.\d+\.(?:weight|bias)"),
        _keep(src_prefix, dst_prefix, r"input\.input"),
        _keep(src_prefix, dst_prefix, layer + r"\.conv\.(?:weight|modulation\.weight|modulation\.bias)"),
        _keep(src_prefix, dst_prefix, layer + r"\.(?:noise\.weight|activate\.bias)"),
        _keep(src_prefix, dst_prefix, rgb + r"\.(?:bias|conv\.weight|conv\.modulation\.weight|conv\.modulation\.bias)"),
        _keep(src_prefix, dst_prefix, r"noises\.noise_\d+"),
        _keep(src_prefix, dst_prefix, r"latent_avg"),
        Rule(p + r"convs\.\d+\.conv\.blur\.kernel", None, check=expect_value(fir_kernel(4.0), atol=1e-6)),
        Rule(p + r"to_rgbs\.\d+\.upsample\.kernel", None, check=expect_value(fir_kernel(4.0), atol=1e-6)),
    ]


def rosinality_discriminator_rules(src_prefix="", dst_prefix=""):
    """Rules for a rosinality ``Discriminator`` state_dict (any size)."""
    p = re.escape(src_prefix)
    return [
        _keep(src_prefix, dst_prefix, r"convs\.0\.0\.weight|convs\.0\.1\.bias"),
        _keep(src_prefix, dst_prefix, r"convs\.\d+\.(?:conv1\.0\.weight|conv1\.1\.bias|conv2\.1\.weight"
                                      r"|conv2\.2\.bias|skip\.1\.weight)"),
        _keep(src_prefix, dst_prefix, r"final_conv\.0\.weight|final_conv\.1\.bias"),
        _keep(src_prefix, dst_prefix, r"final_linear\.[01]\.(?:weight|bias)"),
        Rule(p + r"convs\.\d+\.(?:conv2|skip)\.0\.kernel", None, check=expect_value(fir_kernel(1.0), atol=1e-6)),
    ]


# ------------------------------------------------------------------ NVlabs ADA
def _ada_block(res):
    """k such that b{res} holds convs.2k/2k+1 and to_rgbs.k (res >= 8)."""
    return int(round(math.log2(int(res)))) - 3


def _ada_layer(res, conv):
    res, conv = int(res), int(conv)
    if res == 4:
        return "conv1" if conv == 1 else "<no target for b4.conv0>"
    return f"convs.{2 * _ada_block(res) + conv}"


def _ada_noise(res, conv):
    res, conv = int(res), int(conv)
    if res == 4:
        return "noises.noise_0" if conv == 1 else "<no target for b4.conv0>"
    return f"noises.noise_{2 * _ada_block(res) + 1 + conv}"


def _ada_rgb(res):
    return "to_rgb1" if int(res) == 4 else f"to_rgbs.{_ada_block(res)}"


def ada_generator_rules():
    """Rules for an NVlabs stylegan2-ada ``Generator`` (unconditional) state_dict."""
    layer = r"synthesis\.b(\d+)\.conv([01])\."
    k = expect_value(fir_kernel(1.0), atol=1e-6)
    return [
        Rule(r"mapping\.fc(\d+)\.(weight|bias)", lambda m: f"style.{int(m.group(1)) + 1}.{m.group(2)}"),
        Rule(r"mapping\.w_avg", "latent_avg"),
        Rule(r"synthesis\.b4\.const", "input.input", transform=lambda a: a[None]),
        Rule(r"synthesis\.b\d+\.resample_filter", None, check=k),
        Rule(layer + "resample_filter", None, check=k),
        Rule(layer + "weight", lambda m: _ada_layer(m[1], m[2]) + ".conv.weight", transform=lambda a: a[None]),
        Rule(layer + r"affine\.(weight|bias)", lambda m: _ada_layer(m[1], m[2]) + f".conv.modulation.{m[3]}"),
        Rule(layer + "noise_strength", lambda m: _ada_layer(m[1], m[2]) + ".noise.weight",
             transform=lambda a: np.reshape(a, (1,))),
        Rule(layer + "bias", lambda m: _ada_layer(m[1], m[2]) + ".activate.bias"),
        Rule(layer + "noise_const", lambda m: _ada_noise(m[1], m[2]), transform=lambda a: a[None, None]),
        Rule(r"synthesis\.b(\d+)\.torgb\.weight", lambda m: _ada_rgb(m[1]) + ".conv.weight",
             transform=lambda a: a[None]),
        Rule(r"synthesis\.b(\d+)\.torgb\.bias", lambda m: _ada_rgb(m[1]) + ".bias",
             transform=lambda a: np.reshape(a, (1, -1, 1, 1))),
        Rule(r"synthesis\.b(\d+)\.torgb\.affine\.(weight|bias)",
             lambda m: _ada_rgb(m[1]) + f".conv.modulation.{m[2]}"),
    ]


def ada_discriminator_rules(size):
    """Rules for an NVlabs stylegan2-ada resnet ``Discriminator`` at resolution ``size``."""
    log_size = int(round(math.log2(size)))

    def block(res):
        return f"convs.{log_size - int(round(math.log2(int(res)))) + 1}"

    return [
        Rule(rf"b{size}\.fromrgb\.weight", "convs.0.0.weight"),
        Rule(rf"b{size}\.fromrgb\.bias", "convs.0.1.bias"),
        Rule(r"b(\d+)\.conv0\.weight", lambda m: block(m[1]) + ".conv1.0.weight"),
        Rule(r"b(\d+)\.conv0\.bias", lambda m: block(m[1]) + ".conv1.1.bias"),
        Rule(r"b(\d+)\.conv1\.weight", lambda m: block(m[1]) + ".conv2.1.weight"),
        Rule(r"b(\d+)\.conv1\.bias", lambda m: block(m[1]) + ".conv2.2.bias"),
        Rule(r"b(\d+)\.skip\.weight", lambda m: block(m[1]) + ".skip.1.weight"),
        Rule(r"b\d+\.(?:(?:fromrgb|conv0|conv1|skip|conv)\.)?resample_filter", None,
             check=expect_value(fir_kernel(1.0), atol=1e-6)),
        Rule(r"b4\.conv\.weight", "final_conv.0.weight"),
        Rule(r"b4\.conv\.bias", "final_conv.1.bias"),
        Rule(r"b4\.fc\.(weight|bias)", r"final_linear.0.\1"),
        Rule(r"b4\.out\.(weight|bias)", r"final_linear.1.\1"),
    ]


# ------------------------------------------------------------------ architecture inference
def _channel_multiplier(res_channels, channel_max):
    """cm from channels at resolutions >= 64 where the table is not capped (else 2)."""
    for res, ch in sorted(res_channels.items(), reverse=True):
        if res >= 64 and ch < channel_max:
            cm = ch * res / 16384
            if cm != int(cm) or cm < 1:
                raise ValueError(f"{ch} channels at resolution {res} fit no channel multiplier")
            return int(cm)
    return 2


def _need(sd, key, what):
    if key not in sd:
        raise ValueError(f"no '{key}' key: not a {what} state_dict")
    return np.shape(sd[key])


def infer_generator_kwargs(sd, layout="rosinality"):
    """Generator(size, style_dim, n_mlp, channel_multiplier, channel_max) from shapes."""
    if layout == "nvlabs-ada":
        style_dim = _need(sd, "mapping.fc0.weight", "stylegan2-ada Generator")[0]
        n_mlp = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
        rgb = {int(m[1]): np.shape(v)[1] for k, v in sd.items()
               for m in [re.fullmatch(r"synthesis\.b(\d+)\.torgb\.weight", k)] if m}
        ch4 = _need(sd, "synthesis.b4.const", "stylegan2-ada Generator")[0]
    else:
        style_dim = _need(sd, "style.1.weight", "rosinality Generator")[1]
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        rgb = {2 ** (int(m[1]) + 3): np.shape(v)[2] for k, v in sd.items()
               for m in [re.fullmatch(r"to_rgbs\.(\d+)\.conv\.weight", k)] if m}
        rgb[4] = _need(sd, "input.input", "rosinality Generator")[1]
        ch4 = rgb[4]
    if not rgb:
        raise ValueError("no ToRGB layers: cannot tell the resolution")
    channel_max = int(ch4) if ch4 < 512 else 512
    return {"size": max(rgb), "style_dim": int(style_dim), "n_mlp": n_mlp,
            "channel_multiplier": _channel_multiplier(rgb, channel_max), "channel_max": channel_max}


def ada_minibatch_std_kwargs(init_kwargs, sd=None):
    """Discriminator(stddev_group, stddev_feat) from an ADA ``D``'s recorded init kwargs.

    ``init_kwargs['epilogue_kwargs']`` holds ``mbstd_group_size`` (None: whole batch)
    and ``mbstd_num_channels``; a missing key takes NVlabs' default (4, 1). With
    ``sd``, the channel count is checked against ``b4.conv.weight`` [C, C4 + F, 3, 3].
    """
    epilogue = init_kwargs.get("epilogue_kwargs") if isinstance(init_kwargs, dict) else None
    epilogue = epilogue if isinstance(epilogue, dict) else {}
    got = {k: epilogue.get(k, default) for k, default in ADA_MBSTD_DEFAULTS.items()}
    group, feat = got["mbstd_group_size"], got["mbstd_num_channels"]
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group < 1):
        raise ValueError(f"epilogue_kwargs.mbstd_group_size is {group!r}, not a positive int or None")
    if isinstance(feat, bool) or not isinstance(feat, int) or feat < 0:
        raise ValueError(f"epilogue_kwargs.mbstd_num_channels is {feat!r}, not an int >= 0")
    if sd is not None:
        conv_in = _need(sd, "b4.conv.weight", "stylegan2-ada Discriminator")[1]
        last = [(int(m[1]), np.shape(v)[0]) for k, v in sd.items()
                for m in [re.fullmatch(r"b(\d+)\.conv1\.weight", k)] if m]
        features = min(last)[1] if last else None  # b8 outputs the 4x4 features
        if features is not None and conv_in != features + feat:
            raise ValueError(f"mbstd_num_channels={feat} but b4.conv.weight has {conv_in} input channels "
                             f"for {features} features (expected {features + feat})")
    return {"stddev_group": group, "stddev_feat": feat}


def infer_discriminator_kwargs(sd, layout="rosinality", init_kwargs=None):
    """Discriminator(size, channel_multiplier, channel_max) from shapes.

    For ``layout='nvlabs-ada'`` with ``init_kwargs`` (the pickle's recorded ``D``
    init kwargs), also ``stddev_group``/``stddev_feat``: :func:`ada_minibatch_std_kwargs`.
    """
    if layout == "nvlabs-ada":
        out = {int(m[1]): np.shape(v)[0] for k, v in sd.items()
               for m in [re.fullmatch(r"b(\d+)\.conv1\.weight", k)] if m}  # block b{r} outputs r/2
        res_channels = {r // 2: c for r, c in out.items()}
        froms = [int(m[1]) for k in sd for m in [re.fullmatch(r"b(\d+)\.fromrgb\.weight", k)] if m]
        if not froms:
            raise ValueError("no 'b*.fromrgb.weight' key: not a stylegan2-ada Discriminator state_dict")
        size = max(froms)
        res_channels[size] = np.shape(sd[f"b{size}.fromrgb.weight"])[0]
        ch4 = _need(sd, "b4.conv.weight", "stylegan2-ada Discriminator")[0]
    else:
        blocks = [int(m[1]) for k in sd for m in [re.fullmatch(r"convs\.(\d+)\.conv2\.1\.weight", k)] if m]
        if not blocks:
            raise ValueError("no 'convs.*.conv2.1.weight' key: not a rosinality Discriminator state_dict")
        size = 2 ** (max(blocks) + 2)
        res_channels = {size >> j: np.shape(sd[f"convs.{j}.conv2.1.weight"])[0] for j in blocks}
        res_channels[size] = _need(sd, "convs.0.0.weight", "rosinality Discriminator")[0]
        ch4 = _need(sd, "final_conv.0.weight", "rosinality Discriminator")[0]
    channel_max = int(ch4) if ch4 < 512 else 512
    kwargs = {"size": int(size), "channel_multiplier": _channel_multiplier(res_channels, channel_max),
              "channel_max": channel_max}
    if layout == "nvlabs-ada" and init_kwargs is not None:
        kwargs.update(ada_minibatch_std_kwargs(init_kwargs, sd))
    return kwargs


# ------------------------------------------------------------------ reading the sources
@dataclass
class StyleGAN2Source:
    """One network read from a file: its state_dict plus what is known about it."""

    path: str
    layout: str  # 'rosinality' | 'nvlabs-ada'
    which: str  # 'g_ema' | 'g' | 'd'
    state_dict: dict
    ignored: list = field(default_factory=list)  # top-level entries not used
    meta: dict = field(default_factory=dict)

    @property
    def kind(self):
        return "discriminator" if self.which == "d" else "generator"


def _is_state_dict(obj):
    return isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values())


def _plain_kind(sd):
    if "style.1.weight" in sd or "input.input" in sd:
        return "generator"
    if "final_linear.0.weight" in sd:
        return "discriminator"
    return None


def _describe_ignored(obj, used):
    notes = []
    for k in obj:
        if k in used:
            continue
        if k in ("g_optim", "d_optim"):
            notes.append(f"{k} (optimizer state)")
        elif k == "args":
            notes.append("args (training arguments)")
        else:
            notes.append(str(k))
    return notes


def _read_rosinality(path, which, progress):
    from .torch_pickle import load_torch_file

    obj = load_torch_file(path, progress=progress)
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"top level is {type(obj).__name__}, not a dict")
    networks = [k for k in WHICH if _is_state_dict(obj.get(k))]
    if networks:
        which = which or networks[0]
        if which not in networks:
            raise CheckpointError(path, f"no '{which}' network in the file (has: {', '.join(networks)})")
        sd = dict(obj[which])
        used = {which}
        if which == "g_ema" and isinstance(obj.get("latent_avg"), np.ndarray):  # computed from g_ema
            sd["latent_avg"] = np.reshape(obj["latent_avg"], (-1,))
            used.add("latent_avg")
        return StyleGAN2Source(path, "rosinality", which, sd, _describe_ignored(obj, used))
    if _is_state_dict(obj):
        kind = _plain_kind(obj)
        if kind is None:
            raise CheckpointError(path, "a state_dict with neither rosinality Generator nor Discriminator keys")
        which = which or ("g_ema" if kind == "generator" else "d")
        if (which == "d") != (kind == "discriminator"):
            raise CheckpointError(path, f"--which {which} asked, but the file is a bare {kind} state_dict")
        return StyleGAN2Source(path, "rosinality", which, dict(obj))
    raise CheckpointError(path, f"no 'g_ema', 'g' or 'd' state_dict (top-level keys: "
                                f"{', '.join(map(str, list(obj)[:10]))})")


def _read_ada(path, which):
    from .nvlabs_pkl import load_nvlabs_pkl

    loaded = load_nvlabs_pkl(path)
    which = which or ("g_ema" if "G_ema" in loaded else "g" if "G" in loaded else "d")
    name = ADA_NAMES[which]
    if name not in loaded:
        have = [k for k in ADA_NAMES.values() if k in loaded]
        raise CheckpointError(path, f"no '{name}' network in the pickle (has: {', '.join(have)})")
    meta = loaded["meta"]
    ignored = [k for k in ADA_NAMES.values() if k in loaded and k != name] + meta.get("other_keys", [])
    return StyleGAN2Source(path, "nvlabs-ada", which, loaded[name], ignored,
                           {"ada_network": meta.get("networks", {}).get(name, {}),
                            **{k: v for k, v in meta.items() if k not in ("networks", "other_keys")}})


def read_stylegan2(path, which=None, progress=False):
    """Read one StyleGAN2 network (``which``: g_ema | g | d; None: g_ema, else g, else d)."""
    from .torch_pickle import detect_format

    path = os.fspath(path)
    if which is not None and which not in WHICH:
        raise CheckpointError(path, f"--which must be one of {', '.join(WHICH)}, got {which!r}")
    fmt = detect_format(path)
    if fmt == "pickle":
        return _read_ada(path, which)
    return _read_rosinality(path, which, progress)


# ------------------------------------------------------------------ conversion
def _rules_for(source, size):
    if source.layout == "nvlabs-ada":
        return ada_discriminator_rules(size) if source.kind == "discriminator" else ada_generator_rules()
    if source.kind == "discriminator":
        return rosinality_discriminator_rules()
    return rosinality_generator_rules()


def _build(kind, kwargs):
    from modify_ms.models.stylegan2 import Discriminator, Generator

    return (Discriminator if kind == "discriminator" else Generator)(**kwargs)


def _estimate_latent_avg(model, params, samples=LATENT_AVG_SAMPLES, seed=0):
    """Mean of mapping(z) over ``samples`` z ~ N(0, I) (rosinality's mean_latent)."""
    import mindspore as ms

    fill_cell(model, {**params, "latent_avg": np.zeros(model.style_dim, np.float32)}, "converted parameters")
    z = np.random.default_rng(seed).standard_normal((samples, model.style_dim)).astype(np.float32)
    return model.mapping(ms.Tensor(z)).asnumpy().mean(axis=0)


def convert_stylegan2(src, dst, which=None, size=None, channel_multiplier=None, progress=False):
    """Convert one network of ``src`` to a MindSpore checkpoint ``dst`` (+ ``dst.json``).

    ``size``/``channel_multiplier`` override the values inferred from shapes
    (a disagreement then shows up as a MappingError). Returns the sidecar meta.
    """
    from .mapping import target_shapes_of

    source = read_stylegan2(src, which, progress)
    sd = source.state_dict
    try:
        if source.kind == "discriminator":
            init_kwargs = source.meta.get("ada_network", {}).get("init_kwargs") or {}
            kwargs = infer_discriminator_kwargs(sd, source.layout,
                                                init_kwargs if source.layout == "nvlabs-ada" else None)
        else:
            kwargs = infer_generator_kwargs(sd, source.layout)
    except ValueError as exc:
        raise CheckpointError(src, str(exc))
    if size is not None:
        kwargs["size"] = int(size)
    if channel_multiplier is not None:
        kwargs["channel_multiplier"] = int(channel_multiplier)
    if source.kind == "generator":
        kwargs["lr_mlp"] = 0.01
    try:
        model = _build(source.kind, kwargs)
    except ValueError as exc:
        raise CheckpointError(src, f"cannot build the MindSpore model {kwargs}: {exc}")
    shapes = target_shapes_of(model)
    has_avg = source.kind == "discriminator" or "latent_avg" in sd or "mapping.w_avg" in sd
    if not has_avg:
        shapes = {k: v for k, v in shapes.items() if k != "latent_avg"}
    params = map_state_dict(sd, shapes, _rules_for(source, kwargs["size"]), optional=OPTIONAL,
                            source_name=f"{src} [{source.which}]")
    meta = {
        "format": "modify_ms.stylegan2",
        "module": "modify_ms.models.stylegan2",
        "arch": "Discriminator" if source.kind == "discriminator" else "Generator",
        "kwargs": kwargs,
        "source": os.path.abspath(src),
        "source_layout": source.layout,
        "which": source.which,
        "num_params": len(params),
        "num_values": int(sum(v.size for v in params.values())),
        "ignored_source_entries": source.ignored,
    }
    if source.kind == "generator":
        if has_avg:
            meta["latent_avg"] = "from the checkpoint" if source.layout == "rosinality" else "mapping.w_avg"
        else:
            params["latent_avg"] = _estimate_latent_avg(model, params)
            params = {k: params[k] for k in target_shapes_of(model)}
            meta["latent_avg"] = (f"estimated: mean of mapping(z) over {LATENT_AVG_SAMPLES} z ~ N(0, I), "
                                  "numpy default_rng(0)")
    if source.layout == "nvlabs-ada":
        meta["ada"] = {k: v for k, v in source.meta.items() if k != "ada_network"}
        meta["ada_init_kwargs"] = source.meta.get("ada_network", {}).get("init_kwargs")
        meta["notes"] = ["ADA fp16 layers with conv_clamp=256 are run in float32 without clamping",
                         "ADA demodulation epsilon acts on unscaled weights (negligible difference)"]
    save_arrays(params, dst, meta)
    return meta


def build_from_checkpoint(path):
    """(Generator or Discriminator with the checkpoint's weights, sidecar meta)."""
    params, meta = read_arrays(path)
    if meta.get("format") != "modify_ms.stylegan2":
        raise CheckpointError(path, "no StyleGAN2 sidecar (path + '.json' with format modify_ms.stylegan2)")
    kind = "discriminator" if meta.get("arch") == "Discriminator" else "generator"
    model = _build(kind, meta["kwargs"])
    fill_cell(model, params, path)
    return model, meta


# ------------------------------------------------------------------ inspect support
def detect_layout(sd):
    """'rosinality Generator 256 (...)' etc. when every key of ``sd`` fits a known StyleGAN2 layout."""
    candidates = [
        ("rosinality Generator", "rosinality", rosinality_generator_rules(), infer_generator_kwargs),
        ("rosinality Discriminator", "rosinality", rosinality_discriminator_rules(), infer_discriminator_kwargs),
        ("stylegan2-ada Generator", "nvlabs-ada", ada_generator_rules(), infer_generator_kwargs),
    ]
    for name, layout, rules, infer in candidates:
        if all(any(r.regex.fullmatch(k) for r in rules) or re.fullmatch(OPTIONAL[0], k) for k in sd):
            try:
                kw = infer(sd, layout)
            except (ValueError, KeyError):
                continue
            return f"{name} " + ", ".join(f"{k}={v}" for k, v in kw.items())
    try:
        kw = infer_discriminator_kwargs(sd, "nvlabs-ada")
    except (ValueError, KeyError):
        return None
    rules = ada_discriminator_rules(kw["size"])
    if all(any(r.regex.fullmatch(k) for r in rules) for k in sd):
        return "stylegan2-ada Discriminator " + ", ".join(f"{k}={v}" for k, v in kw.items())
    return None


# ------------------------------------------------------------------ command line
HELP = "rosinality .pt or stylegan2-ada .pkl -> MindSpore StyleGAN2 .ckpt (+ .json sidecar)"


def add_arguments(parser):
    parser.add_argument("src", help="rosinality .pt/.pth or NVlabs stylegan2-ada network .pkl")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt); DST.json gets the architecture")
    parser.add_argument("--which", choices=WHICH, default=None,
                        help="network to convert (default: g_ema if present, else g, else d)")
    parser.add_argument("--size", type=int, default=None, help="resolution (default: inferred from shapes)")
    parser.add_argument("--channel-multiplier", type=int, default=None,
                        help="channel multiplier (default: inferred from shapes)")


def run(args):
    meta = convert_stylegan2(args.src, args.dst, which=args.which, size=args.size,
                             channel_multiplier=args.channel_multiplier, progress=True)
    kwargs = ", ".join(f"{k}={v}" for k, v in meta["kwargs"].items())
    print(f"wrote {args.dst}: {meta['arch']}({kwargs}) from {meta['source_layout']} '{meta['which']}', "
          f"{meta['num_params']} params, {meta['num_values']:,} values")
    if meta.get("latent_avg"):
        print(f"  latent_avg: {meta['latent_avg']}")
    if meta["ignored_source_entries"]:
        print("  ignored: " + ", ".join(meta["ignored_source_entries"]))
    for note in meta.get("notes", []):
        print(f"  note: {note}")
    print(f"wrote {args.dst}.json")
    return 0
