"""Autoregressive models: causal dilated 1-D convolutions, PixelCNN, gated PixelCNN (registered on import)."""
from models.arm import causal_conv1d, gated_pixelcnn, pixelcnn  # noqa: F401  (register the models)
from models.arm.autoregressive import AutoregressiveModel
from models.arm.sampling import sample_cached, sample_naive

__all__ = ["AutoregressiveModel", "sample_cached", "sample_naive"]
