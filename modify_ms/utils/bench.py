"""Shared pieces of the benchmarks (``modify_ms.commands.bench_*``, ``tests/reference/bench_*_torch``):
resident memory, median step time, the worker processes and result tables.

Each (framework, workload) runs in a fresh worker process that prints one ``RESULT {json}``
line, so its peak memory is its own.

Memory figures are MiB from ``/proc/self/status`` (VmRSS now, VmHWM the peak, native
allocations included), with ``getrusage`` as the fallback off Linux.
"""
import json
import resource
import subprocess

RESULT = "RESULT "  # the line a worker prints its figures on


def write_json(path, data):
    """The raw figures as JSON at ``path`` (a temporary name renamed onto it: never half a file)."""
    import os

    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(path + ".tmp", path)


def torch_threads(threads):
    """The torch worker's thread count (intra- and inter-op; the latter is fixed once set)."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set in this process
        pass

def _status_mib(field):
    """A VmXXX line of /proc/self/status in MiB, or None where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mib():
    """Peak resident set size (MiB) of this process, by getrusage (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mib():
    """Current resident set size (MiB); the peak where /proc is missing."""
    now = _status_mib("VmRSS")
    return peak_rss_mib() if now is None else now


def peak_rss_mb():
    """Peak resident set size (MiB) from VmHWM; NaN where /proc is missing."""
    peak = _status_mib("VmHWM")
    return float("nan") if peak is None else peak


def median(values):
    """The upper median of the timed steps (as the benchmarks have always reported it)."""
    values = sorted(values)
    return values[len(values) // 2]


def worker_result(cmd, cwd, what, timeout=None, env=None):
    """Run one worker ``cmd`` in ``cwd``; the dict on its last ``RESULT`` line, or RuntimeError
    naming ``what`` with the tail of the worker's output."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if lines:
        return json.loads(lines[-1][len(RESULT):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:] or ["no output"]
    raise RuntimeError(f"{what} worker failed (exit {proc.returncode}): " + " | ".join(tail))


def print_table(rows, markdown, header):
    """Rows of strings as aligned text, or as a Markdown table."""
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for r in [header] + rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
