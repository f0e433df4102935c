"""PyTorch reference of JoJoGAN's training objective and style strength, written from the
mathematics (BASELINES 3.1 steps 4-5, the paper's feature interpolation), over the StyleGAN2
reference networks of ``stylegan2_ref`` (test-only, never imported by the code under test).

* paired set: s_i = w_i with rows r in M replaced by a w_i[r] + (1 - a) mapping(z_i), the
  other rows exactly w_i (index assignment here, not a mask);
* loss: (1/T) sum_t mean |D_t(G(s)) - D_t(y)| over the taps t (activations after convs[t]);
* strength: f_i = (1 - s) f_i^A + s f_i^B at every layer i of the synthesis network, each
  layer of both generators fed the previous interpolated f.
"""
import torch


def mix_codes(ref_w_plus, mean_w, rows, alpha):
    out = ref_w_plus.clone()
    rows = list(rows)
    out[:, rows] = alpha * ref_w_plus[:, rows] + (1.0 - alpha) * mean_w[:, None, :]
    return out


def disc_feats(discriminator, img, taps):
    feats, x = [], img
    for i, block in enumerate(discriminator.convs):
        x = block(x)
        if i in taps:
            feats.append(x)
    return feats


def feature_l1(discriminator, fake, real, taps):
    fake_f = disc_feats(discriminator, fake, taps)
    with torch.no_grad():
        real_f = disc_feats(discriminator, real, taps)
    return sum((f - r).abs().mean() for f, r in zip(fake_f, real_f)) / len(taps)


def finetune_loss(generator, discriminator, ref_w_plus, references, z, noise, rows, alpha, taps):
    """The notebook's step objective; gradients reach the synthesis parameters only."""
    with torch.no_grad():
        mean_w = generator.mapping(z)
    img = generator(mix_codes(ref_w_plus, mean_w, rows, alpha), noise)
    return feature_l1(discriminator, img, references, taps)


def strength_render(gen_a, gen_b, w_plus, noise, s):
    def mix(fa, fb):
        return (1.0 - s) * fa + s * fb

    x = mix(gen_a.input.input, gen_b.input.input).repeat(w_plus.shape[0], 1, 1, 1)
    x = mix(gen_a.conv1(x, w_plus[:, 0], noise[0]), gen_b.conv1(x, w_plus[:, 0], noise[0]))
    skip = mix(gen_a.to_rgb1(x, w_plus[:, 1]), gen_b.to_rgb1(x, w_plus[:, 1]))
    i = 1
    for b in range(len(gen_a.to_rgbs)):
        for j in (2 * b, 2 * b + 1):
            x = mix(gen_a.convs[j](x, w_plus[:, i + j - 2 * b], noise[j + 1]),
                    gen_b.convs[j](x, w_plus[:, i + j - 2 * b], noise[j + 1]))
        skip = mix(gen_a.to_rgbs[b](x, w_plus[:, i + 2], skip), gen_b.to_rgbs[b](x, w_plus[:, i + 2], skip))
        i += 2
    return skip
