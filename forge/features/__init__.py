"""Base features computed without look-ahead and never across a data gap.

Public API: ``FeatureMatrix``, ``FeatureSpec``, ``FEATURES`` (the registry),
``DEFAULT_FEATURES``, ``compute_features``, ``feature_names``.
"""

from forge.features.registry import (
    DEFAULT_FEATURES,
    FEATURES,
    BarArrays,
    FeatureMatrix,
    FeatureSpec,
    compute_features,
    feature_names,
)

__all__ = ["DEFAULT_FEATURES", "FEATURES", "BarArrays", "FeatureMatrix", "FeatureSpec", "compute_features",
           "feature_names"]
