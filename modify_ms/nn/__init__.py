"""Small layers shared by every model in the project (StyleGAN2, encoders, baselines)."""
import os

# MindSpore 2.10 runs CPU convolutions through oneDNN on plain NCHW tensors; on AVX-512
# CPUs oneDNN then falls back to its reference (scalar) convolution ("jit_uni_ncsp:conv+ref"),
# 20-30x slower than the AVX2 GEMM kernel ("x64:gemm:jit") it picks once the ISA is capped.
# The cap must be in place before the first kernel is created; set ONEDNN_MAX_CPU_ISA
# yourself (e.g. ALL) to override it. See docs/BENCHMARKS.md.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

from .activation import FusedLeakyReLU, scaled_leaky_relu
from .equalized import EqualConv2d, EqualLinear
from .fir import Blur, Upsample, make_blur_kernel, zero_insert_2x
from .modulated import ModulatedConv2d, demodulation
from .noise import NoiseInjection
from .norm import PixelNorm
