"""JoJoGAN (Chong & Forsyth, ECCV 2022): one-shot face stylization by fine-tuning StyleGAN2.

From one or a few aligned style references y_i: invert each with e4e to W+ codes w_i, build
a paired training set by replacing the codes' ``swap`` rows with the mapped codes of random
z (``networks.mix_codes``), and fine-tune the generator's synthesis network so that
G(mixed w_i) matches y_i under a discriminator-feature L1 (or LPIPS). A photo is then
stylized by inverting it and rendering with the fine-tuned generator; the paper's style
strength interpolates the two generators' features layer by layer (``networks.StrengthRender``).

config: ``JoJoGANConfig``; networks: the pieces; trainer: the fine-tuning run; stylizer: the
``jojogan`` entry of modify_ms.stylizers.
"""
