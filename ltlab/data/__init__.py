"""Long-tailed data: sources, subsets, samplers and device-resident loaders."""
from .longtail import longtail_counts, longtail_indices, shot_split
from .loaders import DeviceLoader
from .samplers import SAMPLERS, class_sampling_probs, create_sampler
from .sources import DATASETS, LTDataset, get_dataset

__all__ = ["longtail_counts", "longtail_indices", "shot_split", "get_dataset", "LTDataset", "DATASETS",
           "class_sampling_probs", "create_sampler", "SAMPLERS", "DeviceLoader"]
