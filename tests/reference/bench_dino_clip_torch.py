"""PyTorch side of tools/bench_dino_clip.py (run as ``python -m tests.reference.bench_dino_clip_torch``).

The same step as the MindSpore side with the test references (vit_ref): 0.5 L_ST + L_CLIP (image
prompt, batch source) + 100 L_PROJ and d/dx, DINO ViT-B/8 and CLIP ViT-B/32 at real size, random
weights, frozen. Prints one ``RESULT {json}`` line.
"""
import argparse
import json
import time

import numpy as np
import torch

from modify_ms.commands.bench_dino_clip import WEIGHTS, child_result
from . import vit_ref


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    dino = vit_ref.randomize(vit_ref.DinoViT(224, 8, 768, 12, 12)).eval().requires_grad_(False)
    clip = vit_ref.randomize(vit_ref.CLIPRef(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12, 12)).eval()
    clip.requires_grad_(False)
    rng = np.random.default_rng(0)
    basis = torch.from_numpy(np.linalg.qr(rng.standard_normal((768, 49)))[0].astype(np.float32))
    x = torch.from_numpy(rng.uniform(-1, 1, (args.batch, 3, args.size, args.size)).astype(np.float32))
    y = torch.from_numpy(rng.uniform(-1, 1, (args.batch, 3, args.size, args.size)).astype(np.float32))
    prompt = rng.standard_normal((1, 512))
    prompt = torch.from_numpy((prompt / np.linalg.norm(prompt)).astype(np.float32))

    def step():
        xg = x.clone().requires_grad_(True)
        loss = (WEIGHTS["st"] * vit_ref.structure_loss(dino, xg, y, (224, 224), 11)
                + WEIGHTS["clip"] * vit_ref.directional_clip_loss(clip, xg, y, None, 224, prompt=prompt)
                + WEIGHTS["proj"] * vit_ref.token_projection_loss(clip, xg, basis, 224))
        loss.backward()
        return loss.item()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times, loss = [], None
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    print("RESULT " + json.dumps(child_result(first, times, loss)), flush=True)


if __name__ == "__main__":
    main()
