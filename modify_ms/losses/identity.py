"""ArcFace identity loss (pSp / MODIFY): 1 - cos between IR-SE50 embeddings of two face images.

The face region [35:223, 32:220] of a 256x256 aligned face is cropped, average-pooled to
112x112 (torch AdaptiveAvgPool2d semantics) and embedded by the frozen ArcFace network.
For other input sizes the crop box scales with the image. Parameter names: ``facenet.*``
= the ``model_ir_se50.pth`` keys (see ``modify_ms.models.irse``).

Frozen: every parameter has requires_grad=False and every BatchNorm is built with
use_batch_statistics=False, so the loss never changes its weights or statistics even
inside a cell that is in training mode; gradients flow to the images only.
"""
from mindspore import nn, ops

from ..models.irse import CHANNELS, IRSEBackbone, freeze

CROP_256 = (35, 223, 32, 220)  # top, bottom, left, right on a 256x256 aligned face
FACE_SIZE = 112


def crop_box(image_size):
    """CROP_256 scaled to an image_size x image_size input (exact for 256)."""
    return tuple(int(round(v * image_size / 256)) for v in CROP_256)


class IdentityLoss(nn.Cell):
    """construct(pred, target) -> mean over the batch of 1 - <f(pred), f(target)> (f L2-normalised).

    ``detach_target`` (default, as pSp) stops gradients into the target images.
    ``units``/``channels``/``embedding_dim`` shrink the network for tests; defaults = real IR-SE50.
    """

    def __init__(self, image_size=256, face_size=FACE_SIZE, num_layers=50, units=None, channels=CHANNELS,
                 embedding_dim=512, detach_target=True):
        super().__init__()
        self.top, self.bottom, self.left, self.right = crop_box(image_size)
        self.face_size = face_size
        self.facenet = freeze(IRSEBackbone(face_size, num_layers, "ir_se", 0.0, units, channels, embedding_dim,
                                           frozen=True))
        self.detach_target = detach_target

    def embed(self, x):
        """(B, 3, S, S) in [-1, 1] -> (B, embedding_dim), unit norm."""
        face = x[:, :, self.top:self.bottom, self.left:self.right]
        face = ops.adaptive_avg_pool2d(face, (self.face_size, self.face_size))
        return self.facenet(face)

    def construct(self, pred, target):
        f_pred = self.embed(pred)
        f_target = self.embed(target)
        if self.detach_target:
            f_target = ops.stop_gradient(f_target)
        return (1.0 - (f_pred * f_target).sum(axis=1)).mean()
