"""Data-free distillation, split as in the DataFree toolkit.

* :mod:`~finegrain.datafree.teacher` – the frozen teacher and the preprocessing it dictates;
* :mod:`~finegrain.datafree.synthesizer` – what makes images: a generator (or optimized pixels,
  :mod:`~finegrain.datafree.pixels`) with its own optimizer;
* :mod:`~finegrain.datafree.distiller` – the method base: student + teacher + synthesizer, a
  ``generator`` phase of ``t`` steps and a ``student`` phase of ``k`` steps per iteration;
* :mod:`~finegrain.datafree.bn_hooks`, :mod:`~finegrain.datafree.pool`,
  :mod:`~finegrain.datafree.frozen` – the pieces several methods share.

DFKD-FGVC, DFAD, DeepInversion (and DAFL, ZSKT, DFQ, CMI, MAD, Fast-DFKD) differ only in their synthesizer
and their losses.
"""
