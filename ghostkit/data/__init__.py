"""Datasets and transform presets, one file per task, on the shared format readers of `formats/`; `common` holds
what the tasks share (normalisation, the train / val split, classes.txt), `synthetic` the built-in data.

Import direction: `data` depends only on `ghostkit.errors` and the task registry's plain values
(`ghostkit.tasks.registry`), never on models, task heads or engine.
"""

from ghostkit.data.classify import (
    BUILTIN_DATA,
    ClassifyData,
    ImageListDataset,
    build_classify_data,
    classify_transforms,
    read_imagefolder,
    read_multilabel_csv,
)
from ghostkit.data.common import IMAGENET_MEAN, IMAGENET_STD, read_classes_txt, split_items
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
    "read_classes_txt",
    "read_multilabel_csv",
    "split_items",
    "to_rgb",
    "write_imagefolder",
]
