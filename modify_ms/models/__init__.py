"""Networks: StyleGAN2 generator/discriminator, encoders, remapping network, MODIFY composition."""
