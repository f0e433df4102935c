"""BlendGAN (Liu et al., NeurIPS 2021): arbitrary-style face generation by blending a face code
and a style code in StyleGAN2's W+ space.

A self-supervised style encoder (frozen VGG-19 -> Gram matrices -> MLP, NT-Xent on affine-only
augmentations) gives the style code z_s of an artistic image; the generator maps z_f and z_s
through two MLPs and blends them row by row (the weighted blending module, indicator i); three
discriminators train it: D_face (natural faces, i = 18), D_style (art, i = 0) and the projection
discriminator D_style_latent on (image, z_s).

networks: the pieces; config: ``BlendGANConfig``; trainer: the style-encoder and GAN phases and
one-shot fine-tuning; stylizer: the ``blendgan`` entry of modify_ms.stylizers.
"""
