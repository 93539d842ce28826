"""What every training method is to the shared loop.

A method is an ``nn.Module`` that owns its networks and builds its optimizers as *phases*: a
supervised method has one phase fed by real batches; a data-free method has a generator phase and
a student phase, each run several times per iteration on no real data at all. The loop calls
``method(phase, batch)`` — through Fabric, so DDP and mixed precision apply — and backpropagates
the returned ``loss``; every other entry of the returned dict is logged.

It lives in ``engine`` (below ``datafree`` and ``methods``, see docs/architecture.md) because it is
the loop's contract: the data-free distiller base and every method subclass it, and the loop
only ever talks to it. It was ``finegrain/methods/base.py`` before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from finegrain.engine.optim import build_optimizer, build_scheduler, classifier_param_groups, freeze_through


@dataclass
class Phase:
    name: str
    optimizer: torch.optim.Optimizer
    scheduler: Optional[Any] = None
    steps: int = 1            # optimizer steps per loop iteration
    uses_batch: bool = True   # whether the step consumes the real batch
    warmup_steps: int = 0     # extra steps of this phase alone before a fresh run's first iteration


class Method(nn.Module):
    #: False for data-free methods: the loop then never opens a training split.
    needs_train_data: bool = True
    #: attribute that holds the deployable Classifier (evaluated, exported, predicted with).
    classifier_attr: str = "model"
    #: state-dict prefixes not written to checkpoints (a frozen teacher is loaded from its own file).
    checkpoint_exclude: tuple[str, ...] = ("teacher.",)
    #: config sections this method's code reads besides the core ones (``finegrain.config.CORE_SECTIONS``),
    #: each declared in :mod:`finegrain.method_config`. A run stores exactly these, and reading any
    #: other section from a bound config fails, so the list cannot silently fall behind the code.
    config_sections: tuple[str, ...] = ()

    def __init__(self, cfg, class_names: list[str]):
        super().__init__()
        self.cfg = cfg
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.epoch = 0

    # ----------------------------------------------------------------- what a method provides
    def configure_phases(self, total_iterations: int, iterations_per_epoch: int) -> list[Phase]:
        raise NotImplementedError

    def step(self, phase: str, batch) -> dict[str, torch.Tensor]:
        """One optimization step's losses for ``phase``; must contain ``loss``."""
        raise NotImplementedError

    @classmethod
    def prepare_config(cls, cfg) -> None:
        """Adjust ``cfg`` before data is built (e.g. take image size and normalization from a teacher)."""

    @classmethod
    def class_names_from_config(cls, cfg) -> list[str]:
        """Data-free methods: the class names come from the teacher, not from a training split."""
        raise NotImplementedError

    # ------------------------------------------------------------------------ shared plumbing
    def forward(self, phase: str, batch=None):
        """Same argument order as :meth:`step`; ``batch`` is None for phases that use no real batch."""
        return self.step(phase, batch)

    def eval_model(self) -> nn.Module:
        return getattr(self, self.classifier_attr)

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def on_optimizer_step(self, phase: str) -> None:
        """Called after each optimizer step (EMA copies, queues)."""

    def epoch_report(self, seconds: float) -> tuple[dict, list[str]]:
        """Method-specific figures for the epoch's log line (they override the loop's), and warnings."""
        return {}, []

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.checkpoint_exclude)}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(self.checkpoint_exclude)]
        if missing or unexpected:
            from finegrain.errors import CheckpointError

            raise CheckpointError(f"checkpoint does not fit method {type(self).__name__}: "
                                  f"missing {missing[:3]}, unexpected {unexpected[:3]}")

    def classifier_phase(self, name: str, classifier, total_iterations: int, iterations_per_epoch: int,
                         extra_params=(), optim_cfg=None, schedule_cfg=None) -> Phase:
        """The common phase: one classifier (+ heads) trained with the ``optim``/``schedule`` config."""
        optim_cfg = optim_cfg or self.cfg.optim
        freeze_through(classifier.net, optim_cfg.freeze_through)
        groups = classifier_param_groups(classifier, optim_cfg.backbone_lr_scale)
        extra = [p for p in extra_params if p.requires_grad]
        if extra:
            groups.append({"params": extra, "lr_scale": 1.0})
        optimizer = build_optimizer(groups, optim_cfg)
        scheduler = build_scheduler(optimizer, schedule_cfg or self.cfg.schedule, total_iterations, iterations_per_epoch)
        return Phase(name, optimizer, scheduler)
