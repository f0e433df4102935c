"""MMFS (Zhu et al., Pacific Graphics 2023): multi-modal face stylization with a StyleGAN2 prior.

A spatial encoder replaces StyleGAN2's synthesis below 32 x 32 (at 512 px); the decoder is the
StyleGAN2 layers from there up, modulated by w from a random z (random stylization) or by w+ from a
CLIP mapping (image- or text-guided). Training: stage I (encoder pre-training against a frozen
FFHQ StyleGAN2), stage II (adversarial + DINO structure loss on art), CLIP mapping, and zero- /
one-shot fine-tuning of the decoder.

config: ``MMFSConfig``; networks: the Stylizer; steps: one cell per optimisation phase; trainer:
``train_mmfs``; stylizer: the ``mmfs`` entry of modify_ms.stylizers. The CLIP side (clip_mapper,
mapping, prompting) is in its own modules.
"""
