"""PyTorch side of tools/bench_encoder.py (run as ``python -m tests.reference.bench_encoder_torch``).

Same step as the MindSpore side: codes = E(x); loss = mean((codes - w)^2) + LPIPS(y, x) + ID(y, x);
backward to the encoder and y; Adam on the encoder. Prints one ``RESULT {json}`` line.
"""
import argparse
import json
import time

import torch

from modify_ms.commands.bench_encoder import child_result
from .identity_ref import IdentityLossRef
from .irse_ref import PSPEncoder
from .lpips_ref import LPIPSRef


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    encoder = PSPEncoder(18, args.size).train()
    lpips = LPIPSRef("alex").eval().requires_grad_(False)
    identity = IdentityLossRef(args.size).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    b, s = args.batch, args.size
    x = torch.rand(b, 3, s, s, generator=g) * 2 - 1
    y = (torch.rand(b, 3, s, s, generator=g) * 2 - 1).requires_grad_(True)
    w = torch.randn(b, 18, 512, generator=g)

    def step():
        optimizer.zero_grad()
        y.grad = None
        loss = ((encoder(x) - w) ** 2).mean() + lpips(y, x).mean() + identity(y, x)
        loss.backward()
        optimizer.step()
        return loss.item()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    print("RESULT " + json.dumps(child_result(first, times, loss)), flush=True)


if __name__ == "__main__":
    main()
