"""Evaluation as the papers measure it: FID, ArcFace identity distance, LPIPS diversity.

* ``inception``  InceptionV3 ("fid" = pytorch-fid's TF-ported network, "torchvision"),
                 InceptionFeatureExtractor ([0, 1] images -> 2048-d pool features)
* ``fid``        frechet_distance, feature_statistics, fid_from_features, statistics
                 cache (save_statistics / load_statistics / statistics_key), FIDError
* ``identity``   identity_distance(s) (1 - cos of embeddings), ArcFaceEmbedder
* ``diversity``  lpips_diversity (mean pairwise LPIPS of K stylizations per input), LPIPSDistance
* ``extract``    BatchedFeatures (fixed-shape batches), features_of_files
* ``files``      image listing, output grouping/pairing by file stem, atomic writes
* ``report``     Markdown / CSV result tables
"""
from .diversity import LPIPSDistance, diversity_of_output_groups, lpips_diversity, mean_pairwise_lpips
from .extract import BatchedFeatures, features_of_files, statistics_for_files
from .fid import (FIDError, feature_statistics, fid_from_features, frechet_distance, load_statistics,
                  save_statistics, statistics_key)
from .files import EvalInputError, group_outputs, list_images, pair_by_stem, read_image
from .identity import ArcFaceEmbedder, identity_distance, identity_distances, identity_distances_for_pairs
from .inception import FEATURE_DIM, InceptionFeatureExtractor, InceptionV3

__all__ = ["LPIPSDistance", "diversity_of_output_groups", "lpips_diversity", "mean_pairwise_lpips",
           "BatchedFeatures", "features_of_files", "statistics_for_files", "FIDError", "feature_statistics", "fid_from_features",
           "frechet_distance", "load_statistics", "save_statistics", "statistics_key", "EvalInputError",
           "group_outputs", "list_images", "pair_by_stem", "read_image", "ArcFaceEmbedder",
           "identity_distance", "identity_distances", "identity_distances_for_pairs", "FEATURE_DIM",
           "InceptionFeatureExtractor", "InceptionV3"]
