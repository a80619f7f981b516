"""Import-time stand-in for torchvision (no CPU build installs next to torch 2.13 here).

LeRobot's dataset module imports torchvision names at import time (image transforms, JPEG
helpers); loading a dataset with video_backend="pyav" and no image transforms never calls them.
Any attribute is a placeholder class whose use raises.
"""
import torch


class _Placeholder(type):
    # Attributes of placeholders are placeholders too (e.g. InterpolationMode.NEAREST_EXACT).
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (_Unavailable,), {})


class _Unavailable(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision stub: not available in this check environment")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Placeholder(name, (_Unavailable,), {})
