"""PyTorch side of tools/bench_stargan2.py (``python -m tests.reference.bench_stargan2_torch CONFIG_JSON``):
the test reference's official iteration (stargan2_ref.train_iteration: two D updates with R1, G+F+E
latent, G reference, EMA), he_init on the trained networks, on the driver's host batches.
Prints one ``RESULT {json}`` line."""
import copy
import json
import sys

import torch

from baselines_ms.commands.bench_stargan2 import WORKLOAD, host_batches, with_cpu_time
from modify_ms.commands.bench_modify import result, time_stage1
from modify_ms.utils.bench import median, rss_mib, torch_threads
from . import stargan2_ref as ref


def he_init(module):
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)


def main():
    cfg = json.loads(sys.argv[1])
    torch_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    baseline = rss_mib()
    s, k, first = cfg["size"], cfg["domains"], cfg["first_dim"] or None
    nets = {"generator": ref.Generator(s, cfg["style_dim"], cfg["max_conv_dim"], 0, first),
            "mapping_network": ref.MappingNetwork(cfg["latent_dim"], cfg["style_dim"], k, cfg["hidden_dim"]),
            "style_encoder": ref.StyleEncoder(s, cfg["style_dim"], k, cfg["max_conv_dim"], first),
            "discriminator": ref.Discriminator(s, k, cfg["max_conv_dim"], first)}
    ema = {n: copy.deepcopy(v) for n, v in nets.items() if n != "discriminator"}
    for net in nets.values():
        he_init(net)
    optims = ref.make_optims(nets, 1e-4, 1e-6)
    batches = []
    for b in host_batches(cfg):
        batches.append({key: torch.from_numpy(v).long() if key.startswith("y") else torch.from_numpy(v)
                        for key, v in b.items()})
    lambdas = {"reg": 1.0, "sty": 1.0, "ds": 1.0, "cyc": 1.0}
    cpu = []
    first_s, med, times = time_stage1(with_cpu_time(lambda b: ref.train_iteration(nets, ema, optims, b, lambdas),
                                                    cpu), [(b,) for b in batches], cfg["steps"])
    print("RESULT " + json.dumps(result("torch", torch.__version__, WORKLOAD, cfg, baseline, first_s, med, times,
                                        {"cpu_s": median(cpu[1:])})), flush=True)


if __name__ == "__main__":
    main()
