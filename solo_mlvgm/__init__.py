"""solo-mlvgm: multi-latent generators as a data source for contrastive learning."""

__version__ = "0.1.0"
