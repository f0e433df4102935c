"""Small layers shared by every model in the project (StyleGAN2, encoders, baselines)."""
from .activation import FusedLeakyReLU, scaled_leaky_relu
from .broadcast import expand_as
from .equalized import EqualConv2d, EqualLinear
from .fir import Blur, Upsample, make_blur_kernel, zero_insert_2x
from .modulated import ModulatedConv2d
from .noise import NoiseInjection
from .norm import PixelNorm
