"""Backbones over timm with local weight loading and feature taps."""

from finegrain.models import lenet  # noqa: F401  (registers lenet5, lenet5_half with timm)
from finegrain.models.classifier import Classifier, Taps, create_classifier
from finegrain.models.pretrained import load_pretrained, read_state_dict, shipped_weights

__all__ = ["Classifier", "Taps", "create_classifier", "load_pretrained", "read_state_dict", "shipped_weights"]
