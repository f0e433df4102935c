"""modify_ms: MODIFY (ICASSP 2023) face stylization in MindSpore, and the networks it is built from."""
import os

from .utils.cache import cache_root

# MindSpore 2.10 runs CPU convolutions through oneDNN on NCHW tensors; on AVX-512/AMX CPUs
# oneDNN then falls back to its reference convolution ("jit_uni_ncsp:conv+ref"), 30-100x
# slower than the AVX2 GEMM kernel it picks once the ISA is capped (docs/BENCHMARKS.md).
# The cap only works before the first kernel is created, hence here; set
# ONEDNN_MAX_CPU_ISA yourself (e.g. ALL) to override it. It changes nothing off the CPU.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
# A graph that fails to compile makes MindSpore write rank_0/om/analyze_fail.ir into the
# current directory, which is the user's; send it to the cache folder (the error names the file).
os.environ.setdefault("MS_OM_PATH", os.path.join(cache_root(), "mindspore"))
