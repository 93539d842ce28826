"""finegrain: fine-grained visual categorization when data is scarce or gone."""

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """Load a trained model: ``finegrain.load("runs/demo").predict(["bird.jpg"])``."""
    from finegrain.inference import load as _load

    return _load(path, device)


__all__ = ["__version__", "load"]
