"""The data-free method base: a student learns from a frozen teacher on synthetic images only.

Per loop iteration a data-free method runs two phases (DFKD-FGVC's DF stage, the DataFree
toolkit's synthesizer/distiller split):

* ``generator`` — ``t`` steps of the synthesizer on the method's :meth:`synthesis_objective`,
  the student acting as a critic that does not change (:func:`finegrain.datafree.frozen.as_critic`);
* ``student`` — ``k`` steps of the student (and its auxiliary heads) on
  :meth:`student_objective`, each on a fresh synthetic batch from ``synthesizer.sample``.

The method never reads a training split (``needs_train_data = False``): class names, image size,
crop ratio and normalization come from the teacher's checkpoint, so a real split given for
evaluation is preprocessed exactly as the teacher's data was. A subclass provides
:meth:`build_synthesizer`, :meth:`synthesis_objective` and, if it adds losses,
:meth:`student_objective` and :meth:`student_extra_parameters`.
"""

from __future__ import annotations

import torch
from torch import nn

from finegrain.datafree.frozen import as_critic, freeze_batchnorm
from finegrain.datafree.health import SynthesisHealth
from finegrain.datafree.synthesizer import GeneratorSynthesizer, Synthesizer
from finegrain.datafree.teacher import apply_teacher_preprocessing, load_teacher, teacher_meta
from finegrain.errors import ConfigError
from finegrain.losses.kd import KLDivergence
from finegrain.engine.method import Method, Phase
from finegrain.models import create_classifier


def build_student(cfg, num_classes: int):
    d = cfg.distill
    return create_classifier(d.student, num_classes, pretrained_file=d.student_pretrained_file,
                             drop_rate=cfg.model.drop_rate)


def load_matching_teacher(cfg, class_names):
    """The frozen teacher; its classes must be the method's (same names, same order)."""
    teacher = load_teacher(cfg.distill.teacher)
    if list(teacher.class_names) != list(class_names):
        raise ConfigError(f"{cfg.distill.teacher}: teacher classes do not match the data's "
                          f"({len(teacher.class_names)} vs {len(class_names)} classes, or another order)")
    return teacher


class DataFreeDistiller(Method):
    needs_train_data = False
    classifier_attr = "student"
    checkpoint_exclude = ("teacher.",)

    def __init__(self, cfg, class_names, **context):
        super().__init__(cfg, class_names)
        if cfg.distill.flush_denormal:
            torch.set_flush_denormal(True)  # process-wide; changes only values below 1e-38
        self.teacher = load_matching_teacher(cfg, class_names)
        self.student = build_student(cfg, self.num_classes)
        self.student_ema = self._build_student_ema(cfg.distill.student_ema)
        self.batch_size = cfg.data.batch_size
        self.kd_loss = KLDivergence(cfg.distill.temperature, cfg.distill.kl_direction)
        self.synthesizer = self.build_synthesizer()
        self._configure_pool(cfg.distill)
        try:
            self.health = SynthesisHealth(self.teacher, self.teacher.net.head(), self.num_classes,
                                          bn_every=cfg.distill.health_bn_every)
        except ValueError as err:
            raise ConfigError(f"distill.health_bn_every: {err}") from None
        self._images_at_epoch_start = 0
        # Per-rank synthetic state (pixels, pools) must not be overwritten by rank 0's under DDP.
        self._ddp_params_and_buffers_to_ignore = [f"synthesizer.{n}" for n in self.synthesizer.rank_local()]

    # ----------------------------------------------------------------- what a method provides
    def build_synthesizer(self) -> Synthesizer:
        """Default: the attention generator of the ``generator`` config section."""
        d = self.cfg.data
        return GeneratorSynthesizer.from_config(self.cfg.generator, d.image_size, d.mean, d.std, self.batch_size,
                                                self.num_classes)

    def synthesis_objective(self, images: torch.Tensor) -> dict:
        """The synthesizer's loss on a synthetic batch (the student is a frozen critic here)."""
        raise NotImplementedError

    def student_objective(self, images: torch.Tensor) -> dict:
        """Default: KL between the student's and the teacher's predictions."""
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        kd = self.kd_loss(self.student(images), teacher_logits)
        return {"loss": kd, "kd": kd.detach()}

    def student_extra_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the student besides the student itself (heads, attention modules)."""
        return []

    # ----------------------------------------------------------------------- shared plumbing
    def _configure_pool(self, d) -> None:
        """``distill.pool_*``: a pool for synthesizers that have none, and the views of every pool."""
        if d.pool_size < 0:
            raise ConfigError(f"distill.pool_size must be >= 0, got {d.pool_size}")
        if d.pool_size and self.synthesizer.pool is None:
            self.synthesizer.attach_pool(d.pool_size)
        try:
            self.synthesizer.configure_views(d.pool_flip, d.pool_mix)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def _build_student_ema(self, decay: float):
        """``distill.student_ema``: a slowly moving copy of the student, the one evaluated and exported.

        Why: a data-free student chases a synthesizer that keeps moving, and its val accuracy swings
        by points from epoch to epoch; an average of its recent weights is steadier. The update count
        is a buffer, so a resumed run continues the same decay schedule (checkpoint and resume are exact)."""
        if not decay:
            return None
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"distill.student_ema must be in [0, 1), got {decay}")
        from timm.utils import ModelEmaV3

        self.register_buffer("student_ema_updates", torch.zeros((), dtype=torch.long))
        ema = ModelEmaV3(self.student, decay=decay, use_warmup=True)
        ema.module.requires_grad_(False)  # no optimizer owns it, and DDP must not wait for its gradients
        return ema

    def eval_model(self) -> nn.Module:
        return self.student if self.student_ema is None else self.student_ema.module

    @classmethod
    def prepare_config(cls, cfg) -> None:
        apply_teacher_preprocessing(cfg)
        if not cfg.train.iterations_per_epoch:
            cfg.train.iterations_per_epoch = cfg.distill.iterations_per_epoch

    @classmethod
    def class_names_from_config(cls, cfg) -> list[str]:
        return list(teacher_meta(str(cfg.distill.teacher))["class_names"])

    def configure_phases(self, total_iterations: int, iterations_per_epoch: int) -> list[Phase]:
        optimizer = self.synthesizer.make_optimizer()
        scheduler = self.synthesizer.make_scheduler(optimizer, total_iterations, iterations_per_epoch)
        generator = Phase("generator", optimizer, scheduler, steps=self.cfg.distill.generator_steps, uses_batch=False,
                          warmup_steps=self.cfg.distill.warmup_steps)
        student = self.classifier_phase("student", self.student, total_iterations, iterations_per_epoch,
                                        extra_params=self.student_extra_parameters())
        student.steps, student.uses_batch = self.cfg.distill.student_steps, False
        return [generator, student]

    def step(self, phase: str, batch=None) -> dict:
        if phase == "generator":
            with as_critic(self.student):
                return self.synthesizer.synthesize(self.synthesis_objective)
        if self.cfg.distill.student_bn == "frozen":
            freeze_batchnorm(self.student)
        images = self.synthesizer.sample(self.batch_size)
        with self.health.watch():
            return self.student_objective(images)

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.health.reset()
        self._images_at_epoch_start = self.synthesizer.images_made

    def epoch_report(self, seconds: float) -> tuple[dict, list[str]]:
        """Synthetic images/s and the synthesis health of this epoch; a warning if it collapsed."""
        made = self.synthesizer.images_made - self._images_at_epoch_start
        metrics = {"train/images_per_s": made / seconds if seconds > 0 else 0.0, **self.health.summary()}
        warning = self.health.warning()
        return metrics, [warning] if warning else []

    def on_optimizer_step(self, phase: str) -> None:
        if phase == "generator":
            self.synthesizer.after_step()
        elif phase == "student":
            if self.student_ema is not None:
                self.student_ema_updates += 1
                self.student_ema.update(self.student, step=int(self.student_ema_updates))
