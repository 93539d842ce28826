"""The config sections methods read beyond the core ones: plain dataclasses, no torch.

Why here and not next to each method: building or loading a :class:`~finegrain.config.Config`
(every command, `finegrain configs --keys`, reading a run's sidecar) must know every section's
keys, types and defaults, and importing a method's module imports torch and timm. So a method's
*section* lives in this light module, registered with ``@register_section``, and the method's
class names the sections it reads in ``config_sections`` (:class:`finegrain.methods.base.Method`);
a run stores and accepts overrides of the core sections plus exactly those.

A new method with settings adds its dataclass here and lists its name in ``config_sections``.
The few choice tuples that torch code validates against are defined here too, their one
definition, and imported by that code.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from finegrain.config_fields import option, register_section

#: generator widths: the FC map, then the 4 up-blocks (DFKD-FGVC's paper)
PAPER_CHANNELS = (512, 256, 128, 64, 64)
#: :mod:`finegrain.models.generator` (attention) and :mod:`finegrain.models.upsample_generator` (upsample)
GENERATOR_ARCHITECTURES = ("attention", "upsample")
#: what may sit before the generator's output tanh (:func:`finegrain.models.generator.make_output_norm`), or
#: after it ("standardize")
OUTPUT_NORMS = ("none", "imagenorm", "standardize")
#: the attention generator's ×2 up-blocks (:func:`finegrain.models.generator.upsampling_conv`)
UPSAMPLINGS = ("transposed", "resize")
#: CSDNet's self-distillation: which view teaches which (:mod:`finegrain.losses.self_distillation`)
SSDT_DIRECTIONS = ("raw_to_aug", "aug_to_raw")


# ------------------------------------------------------------------- data-free building blocks

def min_reduction_option():
    """The ``min_reduction`` field of every section that pairs teacher and student stages
    (``mhad``, ``zskt``; :func:`finegrain.losses.mhad.pair_stages`), defined once."""
    return option(4, "stages with stride >= this are paired (timm feature info); 4 skips the stem: ResNet layer1..4")


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
    health_bn_every: int = option(4, "health/bn_loss (L_BN of the student's synthetic batches, a health signal) is "
                                     "measured on every N-th student batch, class coverage and confidence on every "
                                     "one: the moments cost 5-10 % of a student step on the CPU and change no "
                                     "training arithmetic; 1 = every batch")
    flush_denormal: bool = option(True, "CPU: flush denormal floats to zero for this process (saturated attention "
                                        "sigmoids make them, and x86 computes them ~10× slower)")
    # finegrain's practical settings (not the paper's; the paper's behaviour is each default)
    warmup_steps: int = option(0, "synthesizer-only steps before the first student step, so the student never "
                                  "learns from a fresh generator's images (finegrain; paper: 0)")
    pool_size: int = option(0, "keep the last N synthesized images (FIFO) and draw student batches from them, "
                               "so each image teaches several times (finegrain; paper: 0 = a fresh batch per "
                               "student step; DeepInversion and CMI keep their own pools)")
    pool_flip: bool = option(True, "pool draws: mirror at random (turn off for digits or text)")
    pool_mix: str = option("none", "pool draws: cutmix pastes a box of one image of the batch into another (its "
                                   "area a uniform fraction, torchvision's CutMix at alpha 1); the teacher labels the "
                                   "mixed image, so the student sees new inputs, each with the teacher's own answer "
                                   "(finegrain; 'function matching')",
                           choices=("none", "cutmix"))
    student_bn: str = option("train", "student BatchNorm during student steps: train (batch statistics, running ones "
                                      "updated; paper) or frozen (running statistics used and kept bit for bit: "
                                      "a pretrained student keeps its real-image statistics)",
                             choices=("train", "frozen"))
    student_ema: float = option(0.0, "evaluate, keep and export an exponential moving average of the student's "
                                     "weights with this final decay, in [0, 1) (timm's ModelEmaV3; its decay warms up "
                                     "from 0 as 1 - (1 + step)^(-2/3), so a run of a few hundred student steps still "
                                     "averages over its last tens, not its start); 0 = the live student (finegrain; "
                                     "paper: 0)")


@register_section("generator")
@dataclasses.dataclass
class GeneratorConfig:
    noise_dim: int = option(256, "length of the noise vector z ~ N(0, I) (paper: 256)")
    architecture: str = option("attention", "attention: DFKD-FGVC's DCGAN with spatial attention (paper Table 6); "
                                            "upsample: DAFL's and DFAD's upsample-conv-BN generator (the baselines' "
                                            "published one; uses channels[0:2]; SAM in its 2 blocks when "
                                            "attention_lambda != 0; finegrain's practical setting for small grey "
                                            "teachers)",
                               choices=GENERATOR_ARCHITECTURES)
    channels: list = option(list(PAPER_CHANNELS), "widths: FC map, then the 4 up-blocks (paper: 512,256,128,64,64); "
                                                  "the upsample architecture uses the first two")
    attention_lambda: float = option(0.05, "λ of F + λ·softmax(A)⊙F in every block's SAM; 0 = plain DCGAN (paper: 0.05)")
    sam_ratio: int = option(4, "SAM channel reduction r (spec: 4)")
    softmax_axis: str = option("spatial", "SAM softmax over each channel's positions ×H·W, or over channels (spec: spatial)",
                               choices=("spatial", "channel"))
    leaky_slope: float = option(0.2, "LeakyReLU slope of the up-blocks (spec: 0.2)")
    class_conditional: bool = option(False, "add a learnable per-class vector to z and keep each batch's target classes "
                                            "for a target cross-entropy term (finegrain's practical setting, the CMI/"
                                            "Fast-DFKD habit of targeted synthesis; paper: an unconditional generator)")
    target_ce: float = option(0.0, "weight of CE(teacher logits, the batch's target classes) in the generator "
                                   "objective of any generator-based method: the target prior of a class-conditional "
                                   "generator (finegrain's practical setting; needs class_conditional; paper: 0)")
    output_norm: str = option("none", "a normalization so a fresh generator already has photo-like contrast: before "
                                      "the output tanh, per image over (C, H, W) (imagenorm: every image "
                                      "gets contrast, not just the batch); after it, affine-free BatchNorm in the teacher's "
                                      "normalized space (standardize, DAFL's and DFAD's generators: each channel's batch "
                                      "mean and std are the real data's, e.g. MNIST's dark background) (finegrain's "
                                      "practical setting; paper: none)",
                              choices=OUTPUT_NORMS)
    grayscale: bool = option(False, "emit one grey channel, repeated into the three the teacher reads: for teachers "
                                    "trained on grey images such as MNIST (DAFL's and DFAD's MNIST generators emit one "
                                    "channel; default and paper: colour)")
    upsampling: str = option("transposed", "the attention generator's ×2 up-blocks: stride-2 3×3 transposed convs "
                                           "(transposed, the paper's DCGAN) or nearest-neighbour resize then a 3×3 "
                                           "conv (resize: no checkerboard texture, 4× the multiply-adds; finegrain's "
                                           "option)", choices=UPSAMPLINGS)
    lr: float = option(1e-3, "generator Adam learning rate (paper: 1e-3)")
    betas: list = option([0.5, 0.999], "generator Adam betas (paper: 0.5, 0.999)")
    weight_decay: float = option(0.0, "generator weight decay")
    schedule: str = option("constant", "generator learning-rate schedule (spec: constant)", choices=("constant", "cosine"))


# ---------------------------------------------------------- generator baselines' term weights
WEIGHT_DOCS = {
    "adversarial": "weight of −KL(S(x̂), T(x̂)): seek images the student still gets wrong",
    "bn": "weight of the teacher BatchNorm-statistics loss",
    "onehot": "weight of CE of the teacher's logits vs their own argmax",
    "activation": "weight of −mean |teacher pooled features|",
    "balance": "weight of the class-balance term log K − H(batch-mean teacher prediction)",
}


def weights_config(class_name: str, **defaults: float) -> type:
    """A config dataclass whose fields are the named synthesis weights with these defaults.

    A baseline registers it (or a subclass adding its own keys) as its section, so its config
    keys are exactly the terms its generator uses;
    :func:`finegrain.datafree.inversion.weights_from_section` reads them back, the others staying zero.
    """
    unknown = set(defaults) - set(WEIGHT_DOCS)
    if unknown:
        raise ValueError(f"unknown synthesis weights {sorted(unknown)}; known: {', '.join(WEIGHT_DOCS)}")
    fields = [(key, float, option(float(value), WEIGHT_DOCS[key])) for key, value in defaults.items()]
    return dataclasses.make_dataclass(class_name, fields)


# ------------------------------------------------------------------------------ methods
@register_section("kd")
@dataclasses.dataclass
class KDConfig:
    temperature: float = option(4.0, "softmax temperature T of the soft targets")
    kd_weight: float = option(1.0, "weight of T²·KL(teacher ‖ student)")
    ce_weight: float = option(1.0, "weight of cross-entropy with the labels")


@register_section("csdnet")
@dataclasses.dataclass
class CSDNetConfig:
    ssdp: bool = option(True, "SSDP: augmented view masked from the activation map (off: standard random view)")
    ddl: bool = option(True, "DDL: projection head + memory queue contrastive loss")
    ssdt: bool = option(True, "SSDT: self-distillation raw -> augmented view")
    alpha: float = option(1.0, "weight of the queue contrastive loss L_qc")
    beta: float = option(1.0, "weight of the self-distillation loss L_ssdt")
    temperature: float = option(4.0, "SSDT softmax temperature T (spec)")
    ssdt_direction: str = option("raw_to_aug", "SSDT teacher -> student (spec: raw detached teaches augmented)",
                                 choices=SSDT_DIRECTIONS)
    ssdt_symmetric: bool = option(False, "SSDT: average of both directions, each teacher detached")
    queue_size: int = option(4096, "memory queue length (capped at 2 x training-set size) (spec)")
    margin: float = option(0.5, "contrastive margin xi: negatives above it are pushed apart (spec)")
    warmup_epochs: int = option(1, "epochs before the queue term starts (batch pairs only until then) (spec)")
    proj_hidden: int = option(512, "projection head hidden width (spec)")
    proj_dim: int = option(128, "projection head output width (spec)")
    theta_min: float = option(0.5, "SSDP threshold theta ~ U(theta_min, theta_max) of max(A) (spec)")
    theta_max: float = option(0.8, "SSDP threshold upper bound (spec)")
    p_drop: float = option(0.5, "SSDP: probability to erase the salient region, else crop to it (spec)")
    kernel_size: int = option(7, "SSDP smoothing kernel size at kernel_ref_size px, scaled with resolution (spec)")
    kernel_ref_size: int = option(224, "image size at which kernel_size applies")
    kernel: str = option("average", "SSDP smoothing kernel (spec)", choices=("average", "gaussian"))
    flip_prob: float = option(0.5, "augmented view: horizontal flip probability (spec)")
    rotation: float = option(10.0, "augmented view: rotation up to +-this many degrees (spec)")
    random_min_scale: float = option(0.35, "without SSDP: smallest area fraction of the random resized crop")
    mask_source: str = option("previous_step", "when the SSDP mask is computed; see `docs/csdnet.md` (spec)",
                              choices=("previous_step", "current"))


@register_section("dfkd")
@dataclasses.dataclass
class DFKDConfig:
    alpha: float = option(0.3, "α: weight of L_BN in the generator objective α·L_BN − L_KD (paper: 0.3)")
    adversarial: float = option(1.0, "weight of −L_KD in the generator objective α·L_BN − w·L_KD: how hard the "
                                     "generator seeks images the student gets wrong (paper: 1, implicit). The "
                                     "KL is unbounded, so the term can drive images away from anything digit- "
                                     "or photo-like")
    beta: float = option(10.0, "β: weight of L_MHAD in the student objective (paper: 10)")
    gamma: float = option(8.0, "γ: weight of L_SFCL in the student objective (paper: 8)")
    mhad: bool = option(True, "use mixed high-order attention distillation (ablation switch)")
    sfcl: bool = option(True, "use semantic feature contrast learning (ablation switch)")


@register_section("mhad")
@dataclasses.dataclass
class MHADConfig:
    order: int = option(3, "R: highest attention order, 1..3 (paper: 3)")
    reduction: int = option(4, "channel reduction C' = C/reduction of the order projections (spec: 4)")
    form: str = option("shared", "MHA modules shared by both sides and trained, or fixed at a seeded random init (spec)",
                       choices=("shared", "frozen_random"))
    normalize: bool = option(True, "L2-normalize each side's attended map per sample: the collapse guard (spec)")
    loss_reduction: str = option("batch_mean", "squared distance of unit maps averaged over the batch, or also over values (spec)",
                                 choices=("batch_mean", "element_mean"))
    min_reduction: int = min_reduction_option()
    seed: int = option(0, "init seed of frozen_random modules")


@register_section("sfcl")
@dataclasses.dataclass
class SFCLConfig:
    temperature: float = option(0.07, "τ of the InfoNCE (spec: 0.07)")
    dim: int = option(128, "embedding size of the MLP heads (spec: 128)")
    hidden_dim: int = option(0, "hidden width of both heads; 0 = the teacher's feature width (paper §5.2)")
    anchors: str = option("teacher", "anchor the teacher embeddings (paper) or both sides", choices=("teacher", "both"))


@register_section("deepinversion")
@dataclasses.dataclass
class DeepInversionConfig:
    bn_weight: float = option(1.0, "λ_bn: weight of the BatchNorm-statistics loss")
    tv_weight: float = option(0.05, "λ_tv: weight of total variation (mean absolute neighbour difference)")
    l2_weight: float = option(1e-3, "λ_l2: weight of the mean squared normalized pixel")
    adi_scale: float = option(0.2, "λ_adi: ADI's student–teacher disagreement term (0 = plain DeepInversion)")
    lr: float = option(0.1, "Adam learning rate of the pixels")
    betas: list = option([0.5, 0.99], "Adam betas of the pixels")
    pool_size: int = option(2048, "images kept in the pool (oldest dropped first; 0 = all)")
    steps_per_batch: int = option(0, "optimizer steps a batch of pixels gets before it joins the pool; 0 = "
                                     "distill.generator_steps (one batch per iteration). Larger values spread "
                                     "a batch over several iterations, so student steps interleave with it")
    jitter: int = option(2, "random shift of the pixels at each step, in pixels")
    flip: bool = option(True, "random horizontal flips while optimizing and when sampling the pool")
    grayscale: bool = option(False, "optimize one grey channel, shown to the teacher as three equal ones: for "
                                    "teachers trained on grey images such as MNIST (as generator.grayscale; "
                                    "default and paper: colour)")


DAFLConfig = register_section("dafl")(weights_config("DAFLConfig", onehot=1.0, activation=0.1, balance=5.0))


DFQConfig = register_section("dfq")(weights_config("DFQConfig", adversarial=1.0, bn=1.0, onehot=1.0, balance=20.0))


@register_section("cmi")
@dataclasses.dataclass
class CMIConfig(weights_config("CMIWeights", adversarial=0.5, bn=1.0, onehot=1.0)):
    contrast: float = option(0.8, "w_cr: weight of the instance-discrimination loss (CMI: 0.8)")
    temperature: float = option(0.2, "τ of the contrastive loss (CMI: 0.2)")
    head_dim: int = option(128, "embedding size of the head on the teacher (CMI: 128)")
    bank_size: int = option(4096, "embeddings kept in the memory bank, oldest replaced first")
    pool_size: int = option(2048, "synthetic images kept in the pool the student samples (0 = all)")
    local_scale: float = option(0.25, "smallest area fraction of the local view's random crop (CMI: 0.25)")


@register_section("mad")
@dataclasses.dataclass
class MADConfig(weights_config("MADWeights", adversarial=1.0)):
    momentum: float = option(0.9, "m of θ_ema ← m·θ_ema + (1 − m)·θ after each generator step (spec: 0.9)")
    ema_fraction: float = option(0.5, "share of each student batch drawn from the EMA generator, in [0, 1) (spec: 0.5)")


@register_section("fast_dfkd")
@dataclasses.dataclass
class FastDFKDConfig:
    steps_per_batch: int = option(5, "k: steps of the fast generator copy and the latent per synthetic batch, >= 1 "
                                     "(paper: 2, 5 or 10 on CIFAR, its Fast-2/5/10; 50 on ImageNet). A batch may "
                                     "span iterations: distill.generator_steps need not be a multiple of k")
    reptile_step: float = option(0.5, "ε of θ ← θ + ε·(θ' − θ), the meta generator's step towards the adapted copy "
                                      "after each batch, in (0, 1]; 1 = each batch starts from the last one's weights "
                                      "(finegrain's reading; the authors' code takes one Adam step of lr generator.lr × k "
                                      "along the summed inner gradients instead)")
    latent_lr: float = option(0.01, "Adam learning rate of the per-batch latent z (paper's code: 0.01 for Fast-5/10, "
                                    "0.015 for Fast-2); the fast copy learns at generator.lr (paper's code: 3e-3 "
                                    "for Fast-5)")
    bn: float = option(10.0, "weight of the BatchNorm-statistics loss with momentum (paper's code: 10)")
    ce: float = option(0.5, "weight of CE(teacher logits, the batch's target classes) (paper's code: 0.5 for "
                            "ResNet-34 → ResNet-18, 0.4 for WRN-40-2 teachers)")
    adversarial: float = option(1.33, "weight of −KL(S(x̂), T(x̂)) over the images on whose class student and teacher "
                                      "still agree (the distiller's KL), once the student has taken a step; 0 = off "
                                      "(paper's code: 1.33 for ResNet-34 → ResNet-18, 1.1 for WRN-40-2 teachers)")
    bn_momentum: float = option(0.9, "m: the BN loss matches (1 − m)·batch + m·average of the earlier batches' "
                                     "statistics, in [0, 1); 0 = the batch alone (paper's code: 0.9)")


@register_section("spaceshipnet")
@dataclasses.dataclass
class SpaceshipNetConfig:
    bn: float = option(1.0, "weight of the teacher BatchNorm-statistics loss in the generator objective (paper's "
                            "code: 1); its other term, CE to the targets (paper's code: 0.5), is generator.target_ce "
                            "of a class-conditional generator")
    exchange_prob: float = option(0.7, "probability that a student batch is a channel-exchanged one (a fresh batch "
                                       "in which each sample takes half its channels, at one generator feature map, "
                                       "from another sample), in [0, 1]; 0 = no CFE (paper's code: 0.7)")
    exchange_maps: list = option([], "generator feature maps the exchange may happen at, one drawn per batch: 0 = "
                                     "the FC map, i = after up-block i; empty = every map (paper's code: every map "
                                     "of its generator, 0, 1, 2)")
    cam: float = option(1.0, "weight of the MSE between student and teacher class activation maps (last feature "
                             "map through each one's head), in the student loss (paper's code: 1)")
    gradcam: float = option(1.0, "weight of the MSE between student and teacher Grad-CAMs of the teacher's "
                                 "predicted class, summed over paired stages: the multi-scale part of the "
                                 "activation-region constraint (paper's code: 1)")
    min_reduction: int = min_reduction_option()


@register_section("zskt")
@dataclasses.dataclass
class ZSKTConfig(weights_config("ZSKTWeights", adversarial=1.0)):
    attention_weight: float = option(250.0, "β: weight of attention transfer in the student loss (ZSKT: 250)")
    attention_p: float = option(2.0, "p of the attention map mean_c |F|^p (ZSKT: 2)")
    min_reduction: int = min_reduction_option()
