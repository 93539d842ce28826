"""KD on random noise: the student learns the teacher's answers on Gaussian noise (a floor).

DFAD (Fang et al., arXiv 1912.11006, Table 2, "KD on random noise": 74.7 % on MNIST with
LeNet-5 → LeNet-5-half, where DFAD reaches 98.3 %) uses it to show what a data-free student
gets *without* any synthesis: the images are N(0, 1) in the teacher's normalized input space
(:class:`~finegrain.datafree.noise.NoiseSynthesizer`), and the student objective is the
distiller's default KD, ``KL`` between the student's and teacher's predictions on each batch.

There is nothing to synthesize, so the method has only the student phase:
``distill.generator_steps`` and ``distill.warmup_steps`` do not apply; ``distill.student_steps``
(k) student steps run per iteration, each on fresh noise. Logged losses are therefore ``loss``
and ``kd`` rather than ``student/loss``.
"""

from __future__ import annotations

from finegrain.datafree.distiller import DataFreeDistiller
from finegrain.datafree.noise import NoiseSynthesizer
from finegrain.methods import register_method
from finegrain.engine.method import Phase


@register_method("noise-kd", "KD on Gaussian noise (no synthesis): the floor a data-free synthesizer must beat",
                 "Fang et al. (DFAD) Table 2, arXiv 1912.11006")
class NoiseKD(DataFreeDistiller):
    config_sections = ("distill",)

    def build_synthesizer(self) -> NoiseSynthesizer:
        d = self.cfg.data
        return NoiseSynthesizer(d.image_size, d.mean, d.std, self.batch_size)

    def synthesis_objective(self, images):
        raise RuntimeError("noise-kd has no synthesis phase")

    def configure_phases(self, total_iterations: int, iterations_per_epoch: int) -> list[Phase]:
        """Only the student: the noise synthesizer has no parameters (torch optimizers refuse an
        empty list), so there is no generator phase to step."""
        student = self.classifier_phase("student", self.student, total_iterations, iterations_per_epoch,
                                        extra_params=self.student_extra_parameters())
        student.steps, student.uses_batch = self.cfg.distill.student_steps, False
        return [student]
