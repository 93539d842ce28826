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

import dataclasses
from typing import Optional

import torch
from torch import nn

from finegrain.config import option, register_section
from finegrain.datafree.frozen import as_critic, freeze_batchnorm
from finegrain.datafree.health import SynthesisHealth
from finegrain.datafree.synthesizer import GeneratorSynthesizer, Synthesizer
from finegrain.datafree.teacher import apply_teacher_preprocessing, load_teacher, teacher_meta
from finegrain.errors import ConfigError
from finegrain.losses.kd import KLDivergence
from finegrain.engine.method import Method, Phase
from finegrain.models import create_classifier


@register_section("distill")
@dataclasses.dataclass
class DistillConfig:
    teacher: Optional[str] = option(None, "teacher: a finegrain run folder or checkpoint (its weights, classes and preprocessing)", path=True)
    student: str = option("resnet18", "student timm architecture (paper: resnet18)")
    student_pretrained_file: Optional[str] = option(None, "student's initial weights: a local file, 'auto' for shipped ones, or none (random init, as in the paper)", path=True)
    generator_steps: int = option(20, "t: synthesizer steps per iteration (paper: 20)")
    student_steps: int = option(15, "k: student steps per iteration (paper: 15)")
    temperature: float = option(1.0, "softmax temperature of the KL terms (spec: 1)")
    kl_direction: str = option("student_teacher", "KL(σ(S)‖σ(T)) as the paper writes it, or Hinton's KL(σ(T)‖σ(S))",
                               choices=("student_teacher", "teacher_student"))
    iterations_per_epoch: int = option(50, "iterations per epoch when train.iterations_per_epoch is 0 (spec: 50)")
    critic_mode: str = option("eval", "student during synthesizer steps: eval (running BN stats) or train (batch stats, buffers restored)",
                              choices=("eval", "train"))
    channels_last: bool = option(True, "feed synthetic batches to teacher and student in channels-last memory layout: "
                                       "the same computation up to float rounding, ~30 % faster convolutions "
                                       "on the CPU (oneDNN) and under mixed precision on GPUs")
    flush_denormal: bool = option(True, "CPU: flush denormal floats to zero for this process (saturated attention "
                                        "sigmoids make them, and x86 computes them ~10× slower)")
    # finegrain's practical settings (not the paper's; the paper's behaviour is each default)
    warmup_steps: int = option(0, "synthesizer-only steps before the first student step, so the student never "
                                  "learns from a fresh generator's images (finegrain; paper: 0)")
    pool_size: int = option(0, "keep the last N synthesized images (FIFO) and draw student batches from them, "
                               "so each image teaches several times (finegrain; paper: 0 = a fresh batch per "
                               "student step; DeepInversion and CMI keep their own pools)")
    pool_crop: float = option(1.0, "pool draws: random square crop of area fraction in [pool_crop, 1], resized "
                                   "back (1 = no crop)")
    pool_flip: bool = option(True, "pool draws: mirror at random (turn off for digits or text)")
    student_bn: str = option("train", "student BatchNorm during student steps: train (batch statistics, running ones "
                                      "updated; paper) or frozen (running statistics used and kept bit for bit: "
                                      "a pretrained student keeps its real-image statistics)",
                             choices=("train", "frozen"))


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
        self.batch_size = cfg.data.batch_size
        self.kd_loss = KLDivergence(cfg.distill.temperature, cfg.distill.kl_direction)
        self.synthesizer = self.build_synthesizer()
        self._configure_pool(cfg.distill)
        self.health = SynthesisHealth(self.teacher, self.teacher.net.head(), self.num_classes)
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
            self.synthesizer.configure_views(d.pool_crop, d.pool_flip)
        except ValueError as err:
            raise ConfigError(str(err)) from None

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

    def _layout(self, images: torch.Tensor) -> torch.Tensor:
        """``distill.channels_last``: the layout conversion is differentiable, so the synthesizer's
        gradient flows back through it unchanged."""
        if self.cfg.distill.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def step(self, phase: str, batch=None) -> dict:
        if phase == "generator":
            with as_critic(self.student, self.cfg.distill.critic_mode):
                return self.synthesizer.synthesize(lambda images: self.synthesis_objective(self._layout(images)))
        if self.cfg.distill.student_bn == "frozen":
            freeze_batchnorm(self.student)
        images = self._layout(self.synthesizer.sample(self.batch_size))
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
