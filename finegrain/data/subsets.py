"""Few-shot subsets and validation splits carved from train, both per class and seeded."""

from __future__ import annotations

import random
from collections import defaultdict


def by_class(samples):
    groups = defaultdict(list)
    for path, label in samples:
        groups[label].append((path, label))
    return groups


def few_shot(samples, k: int, seed: int):
    """Keep ``k`` images per class (all of a class with fewer), chosen with ``seed``."""
    if k <= 0:
        return list(samples)
    rng = random.Random(seed)
    kept = []
    for label, items in sorted(by_class(samples).items()):
        kept.extend(rng.sample(items, min(k, len(items))))
    return sorted(kept)


def carve_validation(samples, fraction: float, seed: int):
    """Split ``fraction`` of each class off as validation (at least one image where a class has 2+)."""
    rng = random.Random(seed + 7919)
    train, val = [], []
    for label, items in sorted(by_class(samples).items()):
        items = sorted(items)
        rng.shuffle(items)
        n_val = max(1, round(fraction * len(items))) if len(items) > 1 else 0
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return sorted(train), sorted(val)
