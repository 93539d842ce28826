"""Activation-region constraint: the student should be activated *where* the teacher is (the mSARC
term of SpaceshipNet, Yu et al., CVPR 2023; docs/methods.md, SpaceshipNet).

KD on logits says what the teacher predicts, not which part of the image made it predict so. On
synthetic images, which carry noise as well as class evidence, a student can match the logits
through the noise. The constraint adds the teacher's spatial evidence, at two kinds of map:

* class activation maps (CAM) of the last feature map ``F`` (``C×H×W``) through each network's own
  linear head ``W`` (``K×C``): ``CAM_k = Σ_c W_kc·F_c``, one map per class, whose spatial mean is the
  logit less its bias when the head pools by averaging;
* Grad-CAMs at several stages (the *multi-scale* part): for the class ``y*`` the teacher predicts,
  ``GradCAM = Σ_c α_c·F_c`` with ``α_c`` the spatial mean of ``∂logit_{y*}/∂F_c``;

each compared by the mean squared difference of the raw maps, the student's resized (bilinear) to
the teacher's size when they differ. The teacher side is a target (no gradient). On the student
side the gradient reaches the feature maps only: the head's weights in the CAM and the ``α_c`` of
the Grad-CAM enter as constants, as in the authors' code (the head learns from KD). The maps are
not normalized (the authors' code), so their scale is the logits'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_activation_maps(feature_map: torch.Tensor, head_weight: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` features through a ``K×C`` linear head as a 1×1 conv: ``B×K×H×W``, one map per class."""
    return torch.einsum("bchw,kc->bkhw", feature_map, head_weight)


def predicted_class_score(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``Σ_i logits[i, classes[i]]``: one scalar whose gradient is each image's own class gradient."""
    return logits.gather(1, classes[:, None]).sum()


def grad_cams(score: torch.Tensor, maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """``B×H×W`` Grad-CAM of ``score`` at each map: ``Σ_c mean_hw(∂score/∂F_c)·F_c``.

    The channel weights are constants (no second-order graph); the graph that produced ``score`` is
    kept, so the caller's loss can still be backpropagated through it."""
    gradients = torch.autograd.grad(score, maps, retain_graph=True)
    return [(g.mean(dim=(2, 3), keepdim=True) * f).sum(dim=1) for g, f in zip(gradients, maps)]


def region_distance(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of a student map and the (detached) teacher map, the student's
    ``…×H×W`` resized to the teacher's size first if they differ."""
    teacher_map = teacher_map.detach()
    size = tuple(teacher_map.shape[-2:])
    if tuple(student_map.shape[-2:]) != size:
        squeeze = student_map.dim() == 3  # Grad-CAMs: B×H×W
        batch = student_map.unsqueeze(1) if squeeze else student_map
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
        student_map = batch.squeeze(1) if squeeze else batch
    return F.mse_loss(student_map, teacher_map)


def cam_constraint(student_map: torch.Tensor, student_head: torch.Tensor, teacher_map: torch.Tensor,
                   teacher_head: torch.Tensor) -> torch.Tensor:
    """MSE between the student's and the teacher's class activation maps of every class (both heads
    taken as constants: the gradient reaches the student's last feature map only)."""
    student = class_activation_maps(student_map, student_head.detach())
    teacher = class_activation_maps(teacher_map.detach(), teacher_head.detach())
    return region_distance(student, teacher)


def gradcam_constraint(student_cams: list[torch.Tensor], teacher_cams: list[torch.Tensor]) -> torch.Tensor:
    """Σ over paired stages of the MSE between student and teacher Grad-CAMs (the authors sum them)."""
    if len(student_cams) != len(teacher_cams) or not teacher_cams:
        raise ValueError(f"the Grad-CAM constraint needs paired stages, got {len(student_cams)} student "
                         f"and {len(teacher_cams)} teacher maps")
    return torch.stack([region_distance(s, t) for s, t in zip(student_cams, teacher_cams)]).sum()
