"""Networks of a stage-1 run as stand-alone weight files, in the layout the converters write.

``export_weights(run, {"generator": path, ...})`` takes a run folder (its latest checkpoint) or
one of its checkpoints and writes each requested network to its own MindSpore checkpoint with
a JSON sidecar, the files a config's ``weights`` section loads: the decoder as a converted
StyleGAN2 generator (``weights.generator``, also ``tools/render_stylegan2.py --ckpt``), the
discriminator likewise (``weights.discriminator``), the whole encoder (``weights.encoder``).
This is how the quickstart's prior was made (docs/prior.md): a stage-1 run on the built-in
photos, exported.
"""
import hashlib
import os

from ..utils.checkpoint import CheckpointFileError, read_arrays, save_arrays

# network -> (stage-1 checkpoint group, sidecar format, module, class)
EXPORTS = {
    "generator": ("decoder", "modify_ms.stylegan2", "modify_ms.models.stylegan2", "Generator"),
    "discriminator": ("discriminator", "modify_ms.stylegan2", "modify_ms.models.stylegan2", "Discriminator"),
    "encoder": ("encoder", "modify_ms.encoder", "modify_ms.models.psp_encoder", "GradualStyleEncoder"),
}


def network_kwargs(model_cfg, network, n_latent):
    """Constructor arguments of ``network`` as a stage-1 ModelConfig builds it (models.modify)."""
    g, d, e = model_cfg.generator, model_cfg.discriminator, model_cfg.encoder
    if network == "generator":
        return {"size": g.size, "style_dim": g.style_dim, "n_mlp": g.n_mlp,
                "channel_multiplier": g.channel_multiplier, "channel_max": g.channel_max, "lr_mlp": 0.01}
    if network == "discriminator":
        return {"size": g.size, "channel_multiplier": d.channel_multiplier, "channel_max": d.channel_max,
                "stddev_group": d.group, "stddev_feat": d.stddev_feat}
    return {"n_styles": n_latent, "input_size": model_cfg.loss_size, "num_layers": e.num_layers,
            "units": list(e.units), "channels": list(e.channels), "style_dim": g.style_dim}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_weights(run, outputs):
    """Write ``outputs`` {network: path} (networks from EXPORTS) from a stage-1 run or checkpoint;
    returns {network: path}. Each file holds exactly the network's parameters, names without
    the group prefix, so ``fill_cell`` loads it strictly."""
    from ..models.layout import n_latent_for
    from .stage2 import load_stage1

    unknown = sorted(set(outputs) - set(EXPORTS))
    if unknown:
        raise ValueError(f"cannot export {', '.join(unknown)} (known: {', '.join(EXPORTS)})")
    cfg, ckpt = load_stage1(run)
    arrays, meta = read_arrays(ckpt)
    if meta.get("stage") not in (None, 1):
        raise CheckpointFileError(f"{ckpt}: not a stage-1 checkpoint (stage {meta.get('stage')})")
    written = {}
    for network, path in outputs.items():
        group, fmt, module, arch = EXPORTS[network]
        prefix = group + "/"
        params = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        if not params:
            raise CheckpointFileError(f"{ckpt}: holds no {group} parameters")
        save_arrays(params, path, {
            "format": fmt, "module": module, "arch": arch,
            "kwargs": network_kwargs(cfg.model, network, n_latent_for(cfg.model.generator.size)),
            "source": f"stage-1 run checkpoint {os.path.basename(ckpt)} (step {meta.get('step')})",
            "source_sha256": _sha256(ckpt),
            "num_params": len(params), "num_values": int(sum(v.size for v in params.values())),
        })
        written[network] = path
    return written
