"""Shared readers of the annotation formats, one file per format: ``coco``, ``voc``, ``yolo``, ``widerface`` (and
``boxes``, the box clean-up they share). Each reader turns a folder into plain items (image path, targets); the
task data modules (``ghostkit.data.<task>``) build their datasets and transforms on them.
"""
