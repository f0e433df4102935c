"""PyTorch reference for the ArcFace identity loss (crop, adaptive average pool, embedding, 1 - cos).
Test-only; never imports the code under test."""
import torch
import torch.nn.functional as F

from .irse_ref import ArcFace


class IdentityLossRef(torch.nn.Module):
    """``facenet.*`` keys = model_ir_se50.pth keys. Crop box for a 256 image: [35:223, 32:220]."""

    def __init__(self, image_size=256, face_size=112, **arcface_kwargs):
        super().__init__()
        self.box = [int(round(v * image_size / 256)) for v in (35, 223, 32, 220)]
        self.face_size = face_size
        self.facenet = ArcFace(face_size, **arcface_kwargs)

    def embed(self, x):
        t, b, l, r = self.box
        return self.facenet(F.adaptive_avg_pool2d(x[:, :, t:b, l:r], self.face_size))

    def forward(self, pred, target):
        return (1 - (self.embed(pred) * self.embed(target).detach()).sum(1)).mean()
