"""Reference multi-exit segmentation models (written here: no torchvision/timm). Imports torch."""
