"""Encoder4Editing (Tov et al. 2021, e4e): pSp's pyramid and style heads, read as one code plus deltas.

Same parameters and names as ``GradualStyleEncoder`` (``e4e_ffhq_encode.pt`` has pSp's key
names). The difference is the read-out: head 0 on c3 gives w0, broadcast to every W+ row;
head i (1 <= i < min(stage + 1, n_styles)) adds a delta to row i alone, reading c3 for
i < 3, p2 for 3 <= i < 7 and p1 above, so W+ = [w0, w0 + d1, ..., w0 + d_{L-1}]. The
lateral convs run only once a delta needs their level. ``progressive_stage`` is e4e's
training schedule (18, its ``Inference`` stage, uses every delta); it is fixed when the
cell is built because a graph cannot change its loop bounds.
"""
from mindspore import ops

from .psp_encoder import COARSE_END, MIDDLE_END, GradualStyleEncoder, upsample_add

INFERENCE_STAGE = 18  # e4e's ProgressiveStage.Inference


class Encoder4Editing(GradualStyleEncoder):
    """e4e encoder; arguments as ``GradualStyleEncoder`` plus ``progressive_stage`` (0 .. 18)."""

    def __init__(self, *args, progressive_stage=INFERENCE_STAGE, **kwargs):
        if isinstance(progressive_stage, bool) or not isinstance(progressive_stage, int) \
                or not 0 <= progressive_stage <= INFERENCE_STAGE:  # checked first: a bad value builds nothing
            raise ValueError(f"Encoder4Editing: progressive_stage must be an int in [0, 18], got {progressive_stage!r}")
        super().__init__(*args, **kwargs)
        self.progressive_stage = progressive_stage

    def construct(self, x):
        c1, c2, c3 = self.pyramid(x)
        w0 = self.styles[0](c3)
        rows = [w0]
        features = c3
        p2 = c3
        for i in range(1, min(self.progressive_stage + 1, self.n_styles)):
            if i == COARSE_END:
                p2 = upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_END:
                features = upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        rows += [w0] * (self.n_styles - len(rows))
        codes = ops.stack(rows, axis=1)
        if self.add_latent_avg:
            codes = codes + self.latent_avg
        return codes
