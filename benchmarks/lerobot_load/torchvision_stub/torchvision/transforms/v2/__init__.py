"""Import-time stand-in: see torchvision/__init__.py; subclasses of Transform must be definable."""
import torch

from torchvision import __getattr__  # noqa: F401


class Transform(torch.nn.Module):
    pass
