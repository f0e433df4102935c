"""Small layers shared by every model in the project (StyleGAN2, encoders, baselines)."""
from .activation import FusedLeakyReLU, scaled_leaky_relu
from .equalized import EqualConv2d, EqualLinear
