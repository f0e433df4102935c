"""Data: robust image input, FFHQ face alignment, built-in offline data, datasets.

Modules (import what you need; this package imports MindSpore only when a dataset
symbol is asked for, so alignment worker processes stay light):

* ``imageio``  read_image / decode_image / save_image_atomic, ImageReadError, limits
* ``align``    Aligner (modes none / auto / dlib), ffhq_quad, warp_quad, FaceDetector
* ``builtin``  builtin_photos(size), builtin_style_images(size), 'builtin:*' paths
* ``sources``  folder / zip / txt list / single image / built-in sources
* ``prepare``  load_photo (single-photo path), align_source (folders), model arrays
* ``config``   DataConfig (the ``data:`` config section)
* ``dataset``  build_dataset(cfg) -> DataPipeline (mindspore.dataset), EpochSampler
"""
from .align import AlignError, Aligner, AlignUnavailableError, NoFaceError, dlib_available
from .builtin import builtin_images, builtin_photos, builtin_style_images, materialize_builtin
from .config import DataConfig
from .imageio import (MAX_PIXELS, MIN_SIDE, ImageReadError, InputError, decode_image, read_image,
                      save_image_atomic)
from .prepare import align_source, from_model_array, load_photo, to_model_array
from .sources import DataSourceError, open_source

_DATASET_NAMES = ("build_dataset", "DataPipeline", "EpochSampler", "ImageDataset")


def __getattr__(name):
    if name in _DATASET_NAMES:
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'modify_ms.data' has no attribute {name!r}")


__all__ = ["AlignError", "Aligner", "AlignUnavailableError", "NoFaceError", "dlib_available",
           "builtin_images", "builtin_photos", "builtin_style_images", "materialize_builtin",
           "DataConfig", "MAX_PIXELS", "MIN_SIDE", "ImageReadError", "InputError", "decode_image",
           "read_image", "save_image_atomic", "align_source", "from_model_array", "load_photo",
           "to_model_array", "DataSourceError", "open_source", *_DATASET_NAMES]
