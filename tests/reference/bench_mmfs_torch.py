"""PyTorch side of tools/bench_mmfs.py (``python -m tests.reference.bench_mmfs_torch WORKLOAD CONFIG_JSON``).

The same workloads as baselines_ms/commands/bench_mmfs.py, on the test references written from the
mathematics: the Stylizer (mmfs_ref), the clip mapper (torch's own pre-norm TransformerEncoder,
mmfs_clip_ref.TorchEncoderMapper: dropout on in the step, as the official train mode), DINO and
CLIP's image tower (vit_ref) and the losses (vit_ref.structure_loss, directional_clip_loss with the
batch source, token_projection_loss). ``step``: 0.5 L_ST + 1.0 L_CLIP + 100 L_PROJ, backward,
torch.optim.Adam(lr 2e-4, betas (0.9, 0.999)) on decoder0..4b / to_rgb0..4 only; ``inference``: the
prompt's w+ once, then the Stylizer under no_grad. Prints one ``RESULT {json}`` line.
"""
import json
import sys

import torch

from baselines_ms.commands.bench_mmfs import (PROJECTION_LAYERS, VIT_INPUT, host_basis, host_noise, host_prompt,
                                              timed_result)
from modify_ms.commands.bench_modify import host_images
from modify_ms.utils.bench import rss_mib, torch_threads
from . import vit_ref
from .mmfs_clip_ref import TorchEncoderMapper, randomize_
from .mmfs_ref import Stylizer, randomize_stylizer_


class ClipImageTower(torch.nn.Module):
    """CLIP without its text tower (what the fine-tuning step needs), the interface vit_ref's losses use."""

    def __init__(self, c, embed_dim):
        super().__init__()
        self.visual = vit_ref.VisualTransformer(VIT_INPUT, c["patch_size"], c["width"], c["layers"], c["heads"],
                                                embed_dim)

    def encode_image(self, x):
        return self.visual(x)


def build(cfg):
    mp, d, c = cfg["mapper"], cfg["dino"], cfg["clip"]
    stylizer = randomize_stylizer_(Stylizer(cfg["size"], cfg["ngf"], cfg["style_dim"], cfg["n_mlp"],
                                            cfg["channel_multiplier"], cfg["channel_max"]), cfg["seed"])
    mapper = randomize_(TorchEncoderMapper(10, cfg["style_dim"], mp["n_layers"], mp["n_heads"], mp["ff_dim"]),
                        cfg["seed"])
    dino = vit_ref.randomize(vit_ref.DinoViT(VIT_INPUT, d["patch_size"], d["width"], d["layers"], d["heads"]))
    clip = vit_ref.randomize(ClipImageTower(c, cfg["style_dim"]))
    for frozen in (mapper.eval(), dino.eval(), clip.eval()):
        frozen.requires_grad_(False)
    params = [p for n, p in stylizer.named_parameters() if n.startswith(("decoder", "to_rgb"))]
    for n, p in stylizer.named_parameters():
        p.requires_grad_(n.startswith(("decoder", "to_rgb")))
    return stylizer, mapper, dino, clip, params


def main(workload, cfg):
    torch_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    baseline = rss_mib()
    stylizer, mapper, dino, clip, params = build(cfg)
    n = cfg["steps"] + 1
    photos, noises = host_images(cfg, cfg["batch"], n), host_noise(cfg, n)
    prompt = torch.from_numpy(host_prompt(cfg))
    basis = torch.from_numpy(host_basis(cfg))
    w_st, w_clip, w_proj = cfg["weights"]
    opt = torch.optim.Adam(params, lr=cfg["lr"], betas=tuple(float(b) for b in cfg["betas"]))
    losses = []

    def prompt_styles(batch):
        with torch.no_grad():  # the mapper is frozen in phase 4
            return mapper(prompt.expand(batch, -1)).transpose(0, 1)  # seq-first [10, B, D]

    if workload == "inference":
        styles = prompt_styles(cfg["batch"])
    else:
        mapper.train()

    def step(x, noise):
        x, noise = torch.from_numpy(x), [torch.from_numpy(a) for a in noise]
        if workload == "inference":
            with torch.no_grad():
                losses.append(stylizer(x, styles, noise).mean().item())
            return
        fake = stylizer(x, prompt_styles(x.shape[0]), noise)
        loss = (w_st * vit_ref.structure_loss(dino, fake, x, (VIT_INPUT, VIT_INPUT), cfg["dino"]["layers"] - 1)
                + w_clip * vit_ref.directional_clip_loss(clip, fake, x, None, VIT_INPUT, prompt=prompt)
                + w_proj * vit_ref.token_projection_loss(clip, fake, basis, VIT_INPUT, PROJECTION_LAYERS))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())

    out = timed_result("torch", torch.__version__, workload, cfg, baseline, step, list(zip(photos, noises)),
                       dict(params=len(params), code="tests.reference.bench_mmfs_torch"))
    return dict(out, loss_first=losses[0], loss_last=losses[-1])


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))), flush=True)
