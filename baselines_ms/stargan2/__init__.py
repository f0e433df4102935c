"""StarGAN v2 (Choi et al., CVPR 2020), MODIFY's main data-driven comparison (Table 1, FID 65.5):
networks, losses and step cells, trainer, stylizer, as the official code (clovaai/stargan-v2) does them."""
