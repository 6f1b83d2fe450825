"""Compress aerial power-line segmentation models: a DVC pipeline on smp + Lightning."""
