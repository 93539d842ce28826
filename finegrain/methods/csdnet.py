"""CSDNet: contrastive self-distillation for ultra-fine-grained categorization with few samples.

Fang, Jiang, Tang, Li, "Learning Contrastive Self-Distillation for Ultra-Fine-Grained Visual
Categorization Targeting Limited Samples", arXiv 2311.06056. Three modules act on three levels,
and the objective is ``L = L_cls + α·L_qc + β·L_ssdt`` (paper):

* **SSDP** (instance level) — an augmented view x̃ of every image, masked adaptively from the
  network's own activation map (``finegrain.models.ssdp``);
* **DDL** (feature level) — a projection head and a memory queue of past embeddings with their
  labels, and a contrastive loss with margin against it (``finegrain.losses.queue_contrastive``);
* **SSDT** (logit level) — self-distillation from the raw view's prediction to the augmented
  view's (``finegrain.losses.self_distillation``).

``L_cls`` is the cross-entropy on both views (finegrain's reading: the mean over all 2B samples,
so its scale matches plain fine-tuning). Inference uses the raw branch only: the deployable
``model`` is a plain :class:`~finegrain.models.Classifier`, at the backbone's cost.

**When the mask is computed (finegrain's reading, ``csdnet.mask_source``).** SSDP needs the
raw view's activation map before the augmented view exists, yet the two views should share one
concatenated forward (one BN batch, one backbone call) and no extra no-grad forward may be spent
on the mask. finegrain resolves this by pairing across consecutive steps:

* ``previous_step`` (default): step t forwards ``[x_t, x̃_{t-1}]`` in one concatenated pass. The
  raw half's feature map (detached) gives the SSDP view x̃_t of the *same* images x_t, kept
  together with their labels and their detached raw logits until step t+1, where x̃_t is forwarded
  and distilled from those logits. The mask therefore comes from the raw view's own forward, with
  the exact crop geometry, at no extra cost; the teacher logits are one optimizer step old.
  The first step of a run pairs x_0 with a standard random view. The pending pair is saved in
  checkpoints, so a resumed run continues exactly. SSDT can only run raw → augmented here.
* ``current``: the raw view is forwarded (with gradient), its map gives x̃, then x̃ is forwarded
  and one backward serves both — the literal order of docs/methods.md (CSDNet: SSDP); two backbone calls (same FLOPs),
  BN statistics per view.

The spec's other option, masks cached from the previous epoch, needs per-sample indices and crop
parameters the shared loader does not hand to methods, and its masks would sit in last epoch's
crop frame; it is not implemented.

Without SSDP, x̃ is a standard random augmentation of x (resized crop, flip, small rotation)
computed on the batch tensor, paired in the same step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from finegrain.errors import ConfigError
from finegrain.losses.queue_contrastive import MemoryQueue, QueueContrastiveLoss, distributed_world, gather_per_rank
from finegrain.losses.self_distillation import SelfDistillationLoss
from finegrain.method_config import CSDNetConfig
from finegrain.methods import register_method
from finegrain.engine.method import Method
from finegrain.models import Taps, create_classifier
from finegrain.models.heads import ProjectionHead
from finegrain.models.ssdp import SSDP, RankSlice, random_view

PENDING = "ssdp_pending."


def build_ssdp(c: CSDNetConfig) -> SSDP:
    return SSDP(c.theta_min, c.theta_max, c.p_drop, c.kernel_size, c.kernel_ref_size, c.kernel, c.flip_prob, c.rotation)


@register_method("csdnet", "contrastive self-distillation (SSDP + DDL + SSDT) for few-shot ultra-fine-grained data",
                 "Fang et al., arXiv 2311.06056 (IEEE TCSVT 2024)")
class CSDNet(Method):
    config_sections = ("csdnet",)

    def __init__(self, cfg, class_names, *, num_train: int = 0, **context):
        super().__init__(cfg, class_names)
        self.c = c = cfg.csdnet
        if c.ssdp and c.mask_source == "previous_step" and (c.ssdt_symmetric or c.ssdt_direction != "raw_to_aug"):
            raise ConfigError("csdnet.mask_source=previous_step distils only raw_to_aug (the raw logits are a step old); "
                              "set csdnet.mask_source=current for csdnet.ssdt_direction/ssdt_symmetric")
        self.model = create_classifier(cfg.model.name, self.num_classes, pretrained_file=cfg.model.pretrained_file,
                                       drop_rate=cfg.model.drop_rate)
        self.ssdp = build_ssdp(c) if c.ssdp else None
        if c.ddl:
            self.projection = ProjectionHead(self.model.feature_dim, c.proj_hidden, c.proj_dim)
            capacity = min(c.queue_size, 2 * num_train) if num_train else c.queue_size
            self.queue = MemoryQueue(capacity, c.proj_dim)
            self.queue_loss = QueueContrastiveLoss(c.margin)
        if c.ssdt:
            self.distill = SelfDistillationLoss(c.temperature, c.ssdt_direction, c.ssdt_symmetric)
        self.pending: dict[str, torch.Tensor] | None = None
        # Views are drawn from (seed, view step), sliced per rank: a batch split over N processes
        # gets the views one process would draw for the whole batch, and a resumed run the same ones.
        self.register_buffer("view_step", torch.zeros((), dtype=torch.long))

    def configure_phases(self, total_iterations, iterations_per_epoch):
        extra = list(self.projection.parameters()) if self.c.ddl else []
        return [self.classifier_phase("train", self.model, total_iterations, iterations_per_epoch, extra_params=extra)]

    # ------------------------------------------------------------------ SSDP: the two views
    def _view_random(self) -> RankSlice:
        self.view_step += 1
        return RankSlice(self.cfg.train.seed * 1_000_003 + int(self.view_step), *distributed_world())

    def _forward_views(self, x, y):
        """(raw taps, augmented taps, labels of the augmented view, SSDT teacher logits)."""
        rng = self._view_random()
        if self.ssdp is not None and self.c.mask_source == "current":
            raw = self.model.forward_taps(x)
            aug = self.model.forward_taps(self.ssdp(x, raw.feature_map, generator=rng).view)
            return raw, aug, y, raw.logits.detach()
        if self.ssdp is None or self.pending is None:
            x_aug, y_aug, teacher = random_view(x, self.c.random_min_scale, self.c.flip_prob, self.c.rotation, rng), y, None
        else:
            x_aug, y_aug, teacher = self.pending["view"], self.pending["labels"], self.pending["teacher"]
        taps = self.model.forward_taps(torch.cat([x, x_aug]))
        raw, aug = _split_taps(taps, x.shape[0])
        if teacher is None:
            teacher = raw.logits.detach()
        if self.ssdp is not None:
            # The raw half's map makes the SSDP view of these same images, forwarded next step.
            self.pending = {"view": self.ssdp(x, raw.feature_map, generator=rng).view, "labels": y,
                            "teacher": raw.logits.detach()}
        return raw, aug, y_aug, teacher

    # ------------------------------------------------------------------ DDL: queue contrast
    def _queue_contrast(self, raw, aug, y, y_aug):
        z = self.projection(torch.cat([raw.pooled, aug.pooled]))  # both views' embeddings
        labels = torch.cat([y, y_aug])
        # Other ranks' embeddings of this step are keys too (detached, as MoCo's), so the loss of a
        # batch split over ranks equals the whole batch's; all of them are enqueued afterwards.
        world, rank = distributed_world()
        z_parts, y_parts = gather_per_rank(z.detach()), gather_per_rank(labels)
        keys = [p for i, p in enumerate(z_parts) if i != rank]
        key_labels = [p for i, p in enumerate(y_parts) if i != rank]
        if self.epoch >= self.c.warmup_epochs and len(self.queue) > 0:
            memory, memory_labels = self.queue.contents()
            keys, key_labels = keys + [memory], key_labels + [memory_labels]
        memory = torch.cat(keys) if keys else None
        memory_labels = torch.cat(key_labels) if key_labels else None
        loss = self.queue_loss(z, labels, memory, memory_labels)
        self.queue.enqueue(torch.cat(z_parts), torch.cat(y_parts), gather=False)
        return loss

    # ------------------------------------------------------------------ the objective
    def step(self, phase, batch):
        x, y = batch
        raw, aug, y_aug, teacher = self._forward_views(x, y)
        smoothing = self.cfg.train.label_smoothing
        logits = torch.cat([raw.logits, aug.logits])
        ce = F.cross_entropy(logits, torch.cat([y, y_aug]), label_smoothing=smoothing)
        loss, logs = ce, {"ce": ce.detach()}
        if self.c.ddl:
            qc = self._queue_contrast(raw, aug, y, y_aug)
            loss = loss + self.c.alpha * qc
            logs.update(qc=qc.detach(), queue=torch.tensor(float(len(self.queue))))
        if self.c.ssdt:
            ssdt = self._self_distillation(raw, aug, teacher)
            loss = loss + self.c.beta * ssdt
            logs["ssdt"] = ssdt.detach()
        logs["train_acc"] = (raw.logits.argmax(1) == y).float().mean().detach()
        return {"loss": loss, **logs}

    # ------------------------------------------------------------------ SSDT: self-distillation
    def _self_distillation(self, raw, aug, teacher):
        if self.c.ssdt_symmetric or self.c.ssdt_direction == "aug_to_raw":
            return self.distill(raw.logits, aug.logits)  # mask_source=current: same-step pairs
        return self.distill(teacher, aug.logits)

    # ------------------------------------------------------------------ checkpoints carry the pending pair
    def checkpoint_state(self):
        state = super().checkpoint_state()
        for key, value in (self.pending or {}).items():
            state[PENDING + key] = value
        return state

    def load_checkpoint_state(self, state):
        state = dict(state)
        pending = {k[len(PENDING):]: state.pop(k) for k in list(state) if k.startswith(PENDING)}
        super().load_checkpoint_state(state)
        device = next(self.model.parameters()).device
        self.pending = {k: v.to(device) for k, v in pending.items()} or None


def _split_taps(taps, n: int):
    """Split the taps of a concatenated forward into the first ``n`` samples and the rest."""
    first = Taps(taps.logits[:n], taps.feature_map[:n], taps.pooled[:n])
    rest = Taps(taps.logits[n:], taps.feature_map[n:], taps.pooled[n:])
    return first, rest
