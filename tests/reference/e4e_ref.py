"""PyTorch reference of Encoder4Editing (Tov et al. 2021, "Designing an Encoder for StyleGAN Image
Manipulation"), written from the paper's formulation: one base code w0 read from the coarsest map,
broadcast to every W+ row, plus one offset per row, each offset read from the pyramid level pSp
assigns to that row (rows 1-2 from c3, 3-6 from p2, 7+ from p1). Progressive training enables the
offsets one row at a time: at stage s rows 1..s carry offsets, the others are w0.

Test-only; it reuses the torch IR-SE body, style heads and lateral convs of ``irse_ref.PSPEncoder``
(same state_dict keys as ``e4e_ffhq_encode.pt``'s ``encoder.*``) and never imports the code under test.
"""
import torch
import torch.nn.functional as F

from .irse_ref import PSPEncoder

INFERENCE = 18  # e4e's ProgressiveStage.Inference: every offset on


def level_of_row(i):
    """Which pyramid map row i reads: 'c3', 'p2' or 'p1' (pSp's coarse / middle / fine split)."""
    return "c3" if i < 3 else "p2" if i < 7 else "p1"


class E4EEncoder(PSPEncoder):
    """W+ = [w0, w0 + d_1, ..., w0 + d_{L-1}] (+ latent_avg); d_i = 0 for i > stage."""

    def __init__(self, *args, stage=INFERENCE, latent_avg=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage = stage
        self.latent_avg = None if latent_avg is None else torch.as_tensor(latent_avg, dtype=torch.float32)

    def pyramid_maps(self, x):
        """All three maps, computed eagerly (the reference does not skip unused levels)."""
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                taps.append(x)
        c1, c2, c3 = taps
        p2 = F.interpolate(c3, size=c2.shape[2:], mode="bilinear", align_corners=True) + self.latlayer1(c2)
        p1 = F.interpolate(p2, size=c1.shape[2:], mode="bilinear", align_corners=True) + self.latlayer2(c1)
        return {"c3": c3, "p2": p2, "p1": p1}

    def forward(self, x):
        maps = self.pyramid_maps(x)
        w0 = self.styles[0](maps["c3"])
        codes = w0[:, None, :].repeat(1, self.n_styles, 1)
        offsets = torch.zeros_like(codes)
        for i in range(1, self.n_styles):
            if i <= self.stage:
                offsets[:, i] = self.styles[i](maps[level_of_row(i)])
        codes = codes + offsets
        if self.latent_avg is not None:
            codes = codes + self.latent_avg
        return codes
