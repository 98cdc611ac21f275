"""Data sources: Continuous Sampling from a generator, and finite ImageFolders for real-data baselines."""

from solo_mlvgm.data.continuous import ContinuousSampling
from solo_mlvgm.data.export import export_image_folder, render_labelled
from solo_mlvgm.data.real import ImageFolderData
from solo_mlvgm.data.seeding import stream_seed

__all__ = ["ContinuousSampling", "ImageFolderData", "export_image_folder", "render_labelled", "stream_seed"]
