"""finegrain: fine-grained visual categorization when data is scarce or gone.

``import finegrain`` loads no torch, timm or method: each function imports what it needs on call.
"""

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """Load a trained model: ``finegrain.load("runs/demo").predict(["bird.jpg"])``."""
    from finegrain.inference import load as _load

    return _load(path, device)


def train(config=None, *, resume=None, **overrides) -> dict:
    """Train with any method: ``finegrain.train("oxford17_cpu", data__root="flowers", train__epochs=1)``.
    Overrides: ``section__key=value`` or ``**{"section.key": value}`` (see ``finegrain.api``)."""
    from finegrain.api import train as _train

    return _train(config, resume=resume, **overrides)


def distill(config=None, *, teacher=None, student=None, method=None, resume=None, **overrides) -> dict:
    """Distill a teacher (run, checkpoint or imported model folder) into a student (see ``finegrain.api``)."""
    from finegrain.api import distill as _distill

    return _distill(config, teacher=teacher, student=student, method=method, resume=resume, **overrides)


def list_methods() -> list[str]:
    """Registered training and distillation methods, by name."""
    from finegrain.api import list_methods as _list_methods

    return _list_methods()


__all__ = ["__version__", "distill", "list_methods", "load", "train"]
