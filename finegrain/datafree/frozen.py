"""Running a network without changing it.

Data-free methods alternate networks: while the synthesizer learns, the student is only a
critic whose output the generator pushes against; while the student learns, the generator only
draws samples. Neither step may change the other network — not its weights, and not the state
a forward pass changes as a side effect (BatchNorm running statistics, spectral-norm power
iteration vectors).
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen_parameters(module: nn.Module):
    """Parameters stop requiring gradients (input gradients still flow); restored on exit."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def preserved_buffers(module: nn.Module):
    """Buffers (BN statistics, spectral-norm vectors) are put back as they were on exit."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield module
    finally:
        for buffer, copy in saved:
            buffer.data.copy_(copy)


@contextmanager
def as_critic(module: nn.Module):
    """``module`` judges synthetic images without learning from them, in eval mode: its running
    BatchNorm statistics, not the batch's (the DataFree toolkit's habit)."""
    was_training = module.training
    module.eval()
    try:
        with frozen_parameters(module), preserved_buffers(module):
            yield module
    finally:
        module.train(was_training)


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode: running statistics are used, never updated.

    Why: a student initialised from ImageNet weights carries BatchNorm statistics of real photos;
    batch statistics of synthetic images would overwrite them with those of images that are
    only approximately real. Affine weights still learn. Call it after anything that sets train
    mode (the loop does so every epoch).
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()
