"""Fine-grained datasets: formats, safe image decoding, few-shot subsets, transforms, loaders."""

from finegrain.data.dataset import FGVCDataset
from finegrain.data.formats import FORMATS, SplitSamples, read_split, register_format
from finegrain.data.images import load_rgb
from finegrain.data.loaders import DataBundle, ResumableSampler, align_labels, build_datasets, make_loader
from finegrain.data.subsets import carve_validation, few_shot

__all__ = [
    "FORMATS", "DataBundle", "FGVCDataset", "ResumableSampler", "SplitSamples", "align_labels", "build_datasets",
    "carve_validation", "few_shot", "load_rgb", "make_loader", "read_split", "register_format",
]
