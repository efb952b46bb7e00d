"""Datasets, readers and transform presets, one file per task; `synthetic` holds the built-in data.

Import direction: `data` depends only on `ghostkit.errors` (never on models, tasks or engine).
"""

from ghostkit.data.classify import (
    BUILTIN_DATA,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassifyData,
    ImageListDataset,
    build_classify_data,
    classify_transforms,
    read_imagefolder,
    read_multilabel_csv,
    split_items,
)
from ghostkit.data.images import (
    IMG_EXTENSIONS,
    SkippedFilesWarning,
    filter_readable,
    list_images,
    read_image,
    to_rgb,
)
from ghostkit.data.synthetic import SHAPE_CLASSES, ShapeSample, load_digits, make_shapes, write_imagefolder

__all__ = [
    "BUILTIN_DATA",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMG_EXTENSIONS",
    "SHAPE_CLASSES",
    "ClassifyData",
    "ImageListDataset",
    "ShapeSample",
    "SkippedFilesWarning",
    "build_classify_data",
    "classify_transforms",
    "filter_readable",
    "list_images",
    "load_digits",
    "make_shapes",
    "read_image",
    "read_imagefolder",
    "read_multilabel_csv",
    "split_items",
    "to_rgb",
    "write_imagefolder",
]
