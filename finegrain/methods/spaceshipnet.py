"""SpaceshipNet (Yu, Chen, Han & Jiang, CVPR 2023, "Data-free knowledge distillation via feature
exchange and activation region constraint"); docs/methods.md (SpaceshipNet).

Two additions to a model-inversion generator, one on each side of the distillation:

* synthesis — channel-wise feature exchange (CFE, :mod:`finegrain.datafree.feature_exchange`):
  with probability ``p`` a student batch is made by exchanging half the channels of a generator
  feature map between pairs of samples, so the student sees images the generator does not make
  by itself, each labelled afresh by the teacher;
* student — a multi-scale activation-region constraint (mSARC,
  :mod:`finegrain.losses.activation_region`): exchanged images carry noise as well as class
  evidence, and the student is asked to be activated where the teacher is, not only to match its
  logits:

      L_S = KL(S, T) + w_cam·MSE(CAM_S, CAM_T) + w_grad·Σ_stages MSE(GradCAM_S, GradCAM_T)

  CAMs of every class at the last feature map; Grad-CAMs of the teacher's predicted class at each
  paired stage (the deepest stages of equal stride, as ZSKT and MHAD pair them).

The generator is not adversarial: ``L_G = w_bn·L_BN + w_y·CE(T(x̂), y)`` (the authors' code: 1 and
0.5; ``w_y`` is ``generator.target_ce`` and needs a class-conditional generator, as for every
baseline here). Settings (``spaceshipnet`` section): ``bn``, ``exchange_prob`` 0.7, ``exchange_maps``
(every map), ``cam`` 1, ``gradcam`` 1 — every released script of the authors. finegrain's readings: the
exchange is made in a fresh batch of the current generator rather than in stored maps; the KL is
the distiller's (the code's is at T = 30); no crop/flip augmentation of the images, no
lowest-loss-batch selection (every synthesized batch joins the pool, ``distill.pool_size``).
The generator is the ``generator`` section's DCGAN without spatial attention, as for every baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from finegrain.datafree.baseline import GeneratorBaseline
from finegrain.datafree.feature_exchange import FeatureExchangeSynthesizer
from finegrain.datafree.synthesizer import plain_generator_synthesizer
from finegrain.errors import ConfigError
from finegrain.losses.activation_region import cam_constraint, grad_cams, gradcam_constraint, predicted_class_score
from finegrain.losses.mhad import pair_stages
from finegrain.methods import register_method


def check_settings(section) -> None:
    """The ``spaceshipnet`` keys a run cannot use, as a one-line config error naming the key."""
    if not 0.0 <= section.exchange_prob <= 1.0:
        raise ConfigError(f"spaceshipnet.exchange_prob must be in [0, 1], got {section.exchange_prob}")
    for key in ("bn", "cam", "gradcam"):
        if getattr(section, key) < 0:
            raise ConfigError(f"spaceshipnet.{key} must be >= 0, got {getattr(section, key)}")


def check_cam_head(classifier, who: str) -> None:
    """The CAM term uses the classifier's head as a 1×1 conv on its last feature map: the head must be
    one linear layer on the pooled map (timm's global pool then ``Linear``)."""
    head = classifier.head()
    if not isinstance(head, nn.Linear) or head.in_features != classifier.feature_dim:
        raise ConfigError(f"spaceshipnet.cam: the {who} ({classifier.arch}) has no single linear head on its pooled "
                          f"last feature map, so it has no class activation maps; set spaceshipnet.cam=0")


@register_method("spaceshipnet", "SpaceshipNet: L_BN + target CE generator, channel-exchanged student batches; "
                                 "KD + multi-scale activation-region (CAM/Grad-CAM) constraint",
                 "Yu et al., CVPR 2023, arXiv 2302.14290")
class SpaceshipNet(GeneratorBaseline):
    config_sections = ("distill", "generator", "spaceshipnet")
    weights_section = "spaceshipnet"

    def __init__(self, cfg, class_names, **context):
        check_settings(cfg.spaceshipnet)
        super().__init__(cfg, class_names, **context)
        s = cfg.spaceshipnet
        self.teacher_stages, self.student_stages = pair_stages(self.teacher.net, self.student, s.min_reduction)
        if s.gradcam and not self.teacher_stages:
            raise ConfigError(f"spaceshipnet.gradcam: teacher and student share no stage of stride >= "
                              f"{s.min_reduction} (spaceshipnet.min_reduction); set spaceshipnet.gradcam=0")
        if s.cam:
            check_cam_head(self.teacher.net, "teacher")
            check_cam_head(self.student, "student")

    def build_synthesizer(self) -> FeatureExchangeSynthesizer:
        s = self.cfg.spaceshipnet
        try:
            return plain_generator_synthesizer(self.cfg, FeatureExchangeSynthesizer, self.num_classes,
                                               exchange_prob=s.exchange_prob, maps=s.exchange_maps)
        except ValueError as err:  # the synthesizer's message names the key
            raise ConfigError(str(err)) from None

    def teacher_regions(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The teacher's logits, last feature map and Grad-CAMs at its paired stages, all detached.

        Grad-CAMs need the teacher's gradients, so with ``gradcam`` on it runs on a copy of the batch
        that requires grad (its weights never do); the graph is dropped on return."""
        if not self.cfg.spaceshipnet.gradcam:
            with torch.no_grad():
                taps = self.teacher.forward_taps(images)
            return taps.logits, taps.feature_map, []
        with torch.enable_grad():
            taps = self.teacher.forward_taps(images.detach().requires_grad_(True), stages=True)
            score = predicted_class_score(taps.logits, taps.logits.argmax(1))
            cams = grad_cams(score, [taps.stages[i] for i in self.teacher_stages])
        return taps.logits.detach(), taps.feature_map.detach(), [c.detach() for c in cams]

    def student_objective(self, images: torch.Tensor) -> dict:
        s = self.cfg.spaceshipnet
        teacher_logits, teacher_map, teacher_cams = self.teacher_regions(images)
        student = self.student.forward_taps(images, stages=bool(s.gradcam))
        kd = self.kd_loss(student.logits, teacher_logits)
        loss, logs = kd, {"kd": kd.detach()}
        if s.cam:
            cam = cam_constraint(student.feature_map, self.student.head().weight, teacher_map,
                                 self.teacher.net.head().weight)
            loss, logs["cam"] = loss + s.cam * cam, cam.detach()
        if s.gradcam:
            score = predicted_class_score(student.logits, teacher_logits.argmax(1))
            student_cams = grad_cams(score, [student.stages[i] for i in self.student_stages])
            gradcam = gradcam_constraint(student_cams, teacher_cams)
            loss, logs["gradcam"] = loss + s.gradcam * gradcam, gradcam.detach()
        return {"loss": loss, **logs}
