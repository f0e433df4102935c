"""PyTorch side of tools/bench_fid.py (run as ``python -m tests.reference.bench_fid_torch``).

pytorch-fid's pipeline through the reference Inception (inception_ref.fid_features) with random
weights in the FID layout; prints one ``RESULT {json}`` line.
"""
import argparse
import json
import time

import torch

from modify_ms.assets import key_manifests
from modify_ms.commands.bench_fid import child_result
from .inception_ref import fid_features



def fid_state(generator):
    """Random weights shaped like pt_inception-2015-12-05 (torchvision names, no AuxLogits, fc 1008)."""
    manifest = key_manifests()["torchvision_inception_v3"]
    state = {}
    for key, shape in manifest.items():
        if key.startswith("AuxLogits.") or key.endswith("num_batches_tracked"):
            continue
        shape = [1008] + shape[1:] if key.startswith("fc.") else shape
        if key.endswith("conv.weight"):  # He-scaled, so activations stay O(1) (no inf/NaN slow paths)
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(*shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("running_var", "bn.weight")):
            value = 0.5 + torch.rand(*shape, generator=generator)
        else:
            value = torch.randn(*shape, generator=generator) * 0.05
        state[key] = value
    return state


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    state = fid_state(g)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    with torch.no_grad():
        t0 = time.perf_counter()
        fid_features(state, images)
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.batches):
            t0 = time.perf_counter()
            fid_features(state, images)
            times.append(time.perf_counter() - t0)
    print("RESULT " + json.dumps(child_result(first, times, args.batch)), flush=True)


if __name__ == "__main__":
    main()
