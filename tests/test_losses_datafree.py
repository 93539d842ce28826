"""Unit tests of the data-free building blocks: generator, losses, hooks, pool, frozen networks."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from finegrain.datafree.bn_hooks import BNStatsHooks
from finegrain.datafree.frozen import as_critic
from finegrain.datafree.pool import ImagePool
from finegrain.datafree.synthesizer import Normalizer
from finegrain.losses.bn_stats import BNStatsLoss
from finegrain.losses.image_priors import L2Prior, TotalVariation
from finegrain.losses.kd import JensenShannon, KLDivergence, LogitL1
from finegrain.losses.mhad import MHADLoss, MixedHighOrderAttention
from finegrain.losses.sfcl import SemanticContrastLoss, teacher_student_info_nce
from finegrain.models.generator import PAPER_CHANNELS, AttentionGenerator, SpatialAttention

SMALL = [64, 32, 16, 8, 8]



@pytest.fixture(autouse=True)
def one_thread():
    """On a shared 2-core machine two intra-op threads are ~20× slower than one (they wait for
    each other whenever another process holds a core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# ------------------------------------------------------------------------------- generator
@pytest.mark.parametrize("size,channels", [(32, PAPER_CHANNELS), (64, SMALL), (224, SMALL), (100, SMALL)])
def test_generator_shape_and_range(size, channels):
    torch.manual_seed(0)
    g = AttentionGenerator(size, noise_dim=32, channels=channels)
    x = g(torch.randn(3, 32) * 50)  # large noise saturates tanh: still inside [-1, 1]
    assert x.shape == (3, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    normalizer = Normalizer([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    images = normalizer((x + 1) / 2)
    low, high = normalizer.bounds()
    assert (images >= low - 1e-5).all() and (images <= high + 1e-5).all()


def test_sam_unpool_puts_values_back_at_the_pool_indices():
    torch.manual_seed(0)
    sam = SpatialAttention(16, ratio=4)
    seen = {}
    sam.pool.register_forward_hook(lambda m, i, o: seen.update(pooled_from=i[0], indices=o[1]))
    sam.unpool.register_forward_hook(lambda m, i, o: seen.update(unpool_in=i[0], unpool_out=o))
    sam.attention_logits(torch.randn(2, 16, 8, 8))
    indices, values, out = seen["indices"], seen["unpool_in"], seen["unpool_out"]
    flat_out = out.flatten(2)
    # every decoder value sits exactly where the encoder's maximum was ...
    assert torch.equal(flat_out.gather(2, indices.flatten(2)), values.flatten(2))
    # ... those are the argmax positions of each 2×2 window of the pooled map ...
    window_max = seen["pooled_from"].flatten(2).gather(2, indices.flatten(2))
    assert torch.equal(window_max, F.max_pool2d(seen["pooled_from"], 2).flatten(2))
    # ... and every other position is zero.
    mask = torch.zeros_like(flat_out, dtype=torch.bool).scatter_(2, indices.flatten(2), True)
    assert (flat_out[~mask] == 0).all()


def plain_dcgan(g: AttentionGenerator, z: torch.Tensor) -> torch.Tensor:
    """The DCGAN without attention, written out from the generator's own layers."""
    x = g.bn(g.fc(z).view(z.shape[0], -1, g.init_size, g.init_size))
    for block in g.blocks:
        x = F.leaky_relu(block.up(x), 0.2)
    return torch.tanh(g.to_rgb(x))


def test_lambda_zero_is_exactly_the_plain_dcgan():
    torch.manual_seed(0)
    attentive = AttentionGenerator(32, 16, SMALL, attention_lambda=0.05)
    off = AttentionGenerator(32, 16, SMALL, attention_lambda=0.0)
    missing, unexpected = off.load_state_dict(attentive.state_dict(), strict=False)
    assert not missing and all(".sam." in k for k in unexpected)
    attentive.eval(), off.eval()
    z = torch.randn(4, 16)
    assert torch.equal(off(z), plain_dcgan(off, z))
    assert not torch.allclose(attentive(z), off(z))


def test_sam_softmax_matches_plain_softmax_and_stays_finite():
    sam = SpatialAttention(8)
    x = torch.randn(2, 8, 4, 4)
    expected = F.softmax(sam.attention_logits(x).flatten(2), dim=2).view(2, 8, 4, 4) * 16
    assert torch.allclose(sam.weights(x), expected, atol=1e-6)
    with torch.no_grad():
        sam.expand.weight.mul_(1e4)  # extreme logits: weights still finite and summing to H·W
    weights = sam.weights(x)
    assert torch.isfinite(weights).all() and torch.allclose(weights.sum((2, 3)), torch.full((2, 8), 16.0))


def test_sam_uniform_attention_scales_features_by_one_plus_lambda():
    sam = SpatialAttention(8)
    for p in sam.expand.parameters():
        nn.init.zeros_(p)  # A = 0 everywhere -> spatial softmax uniform -> weights exactly 1
    x = torch.randn(2, 8, 4, 4)
    assert torch.allclose(sam(x, 0.05), 1.05 * x, atol=1e-6)


# ----------------------------------------------------------------------------------- KD
@pytest.mark.parametrize("direction", ["teacher_student", "student_teacher"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kl_zero_for_equal_logits_positive_otherwise(direction, temperature):
    logits = torch.randn(5, 7)
    kl = KLDivergence(temperature, direction)
    assert kl(logits, logits.clone()).abs() < 1e-6
    assert kl(logits + 3 * torch.randn(5, 7), logits) > 0
    assert LogitL1()(logits, logits.clone()) == 0
    assert JensenShannon()(logits, logits.clone()).abs() < 1e-6


def test_kl_values_and_t_squared_scaling():
    s, t = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    p_t, p_s = F.softmax(t, 1), F.softmax(s, 1)
    expected = float((p_t * (p_t / p_s).log()).sum())
    assert KLDivergence(1.0, "teacher_student")(s, t) == pytest.approx(expected, rel=1e-5)
    p_t4, p_s4 = F.softmax(t / 4, 1), F.softmax(s / 4, 1)
    assert KLDivergence(4.0, "teacher_student")(s, t) == pytest.approx(16 * float((p_t4 * (p_t4 / p_s4).log()).sum()), rel=1e-5)
    assert KLDivergence(1.0, "student_teacher")(s, t) == pytest.approx(float((p_s * (p_s / p_t).log()).sum()), rel=1e-5)


def test_js_is_bounded_and_has_finite_gradients_when_softmax_underflows():
    s = torch.tensor([[200.0, -200.0]], requires_grad=True)
    t = torch.tensor([[-200.0, 200.0]])
    js = JensenShannon()(s, t)
    js.backward()
    assert float(js.detach()) == pytest.approx(math.log(2), rel=1e-4) and torch.isfinite(s.grad).all()


# ----------------------------------------------------------------------- BN statistics
def test_bn_loss_zero_when_batch_matches_running_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5))
    x = torch.randn(6, 3, 8, 8)
    net.train()
    with torch.no_grad():  # set each BN's running stats to this batch's statistics
        h = net[0](x)
        net[1].running_mean.copy_(h.mean((0, 2, 3)))
        net[1].running_var.copy_(h.var((0, 2, 3), unbiased=False))
        h2 = net[3](F.relu(F.batch_norm(h, None, None, net[1].weight, net[1].bias, True)))
        net[4].running_mean.copy_(h2.mean((0, 2, 3)))
        net[4].running_var.copy_(h2.var((0, 2, 3), unbiased=False))
    net.eval()
    hooks = BNStatsHooks(net)
    with torch.no_grad(), hooks.collect() as stats:
        net(x)
    assert len(stats) == 2
    assert float(BNStatsLoss()(stats)) < 1e-4
    with torch.no_grad(), hooks.collect() as stats:
        net(x * 2 + 1)
    assert float(BNStatsLoss()(stats)) > 0.1
    net(x)  # outside collect(): nothing recorded
    assert len(hooks.stats) == 2


def test_image_priors():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert TotalVariation()(flat) == 0
    assert TotalVariation()(torch.randn(2, 3, 8, 8)) > 0.5
    assert L2Prior()(flat) == pytest.approx(0.09)


# ----------------------------------------------------------------------------------- SFCL
def test_sfcl_info_nce_matches_closed_form():
    tau = 0.5
    zt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    zs = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    # anchor t1: positive s1 (0.6); negatives t2 (0), s2 (0.8). anchor t2: positive s2 (0.6); negatives t1 (0), s1 (0.8)
    one = -math.log(math.exp(0.6 / tau) / (math.exp(0.6 / tau) + math.exp(0.0) + math.exp(0.8 / tau)))
    assert float(teacher_student_info_nce(zt, zs, tau)) == pytest.approx(one, rel=1e-6)
    # student anchors: s1's positive t1 (0.6), negatives t2 (0.8) and s2 (0.96); s2 symmetric
    two = -math.log(math.exp(0.6 / tau) / (math.exp(0.6 / tau) + math.exp(0.8 / tau) + math.exp(0.96 / tau)))
    assert float(teacher_student_info_nce(zt, zs, tau, anchors="both")) == pytest.approx((one + two) / 2, rel=1e-6)


def test_sfcl_lowest_when_student_equals_teacher_embeddings():
    torch.manual_seed(0)
    zt = F.normalize(torch.randn(8, 16), dim=1)
    best = teacher_student_info_nce(zt, zt.clone(), 0.07)
    for scale in (0.1, 0.5, 2.0):
        other = F.normalize(zt + scale * torch.randn(8, 16), dim=1)
        assert teacher_student_info_nce(zt, other, 0.07) > best
    assert teacher_student_info_nce(zt, zt[torch.randperm(8)], 0.07) > best


def test_sfcl_heads_map_student_width_through_teacher_width():
    loss = SemanticContrastLoss(teacher_dim=32, student_dim=12, out_dim=8)
    assert loss.student_head[0].in_features == 12 and loss.student_head[0].out_features == 32
    value = loss(torch.randn(4, 32), torch.randn(4, 12))
    value.backward()
    assert value > 0 and loss.student_head[0].weight.grad is not None


# ----------------------------------------------------------------------------------- MHAD
def test_mha_orders_and_shape():
    for order in (1, 2, 3):
        mha = MixedHighOrderAttention(8, order=order)
        assert [len(p) for p in mha.projections] == list(range(1, order + 1))
        x = torch.randn(2, 8, 5, 5)
        a = mha.attention(x)
        assert a.shape == x.shape and (a > 0).all() and (a < 1).all()


def test_mhad_adapts_channels_and_resizes_student_maps():
    loss = MHADLoss([16, 32], [8, 8], order=2)
    value = loss([torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)], [torch.randn(2, 8, 16, 16), torch.randn(2, 8, 2, 2)])
    assert value.shape == () and 0 < value <= 8  # two stages, each 2 − 2cos ∈ [0, 4]
    same = torch.randn(2, 16, 8, 8)
    assert MHADLoss([16], [16])([same], [same]) < MHADLoss([16], [16])([same], [torch.randn(2, 16, 8, 8)])


def optimize_module_alone(normalize: bool, steps: int = 100) -> tuple[float, float]:
    torch.manual_seed(0)
    teacher = torch.randn(4, 8, 6, 6).relu()
    student = torch.randn(4, 8, 6, 6).relu()
    torch.manual_seed(1)
    loss = MHADLoss([8], [8], normalize=normalize)
    loss.adapters.requires_grad_(False)
    optimizer = torch.optim.Adam(loss.attentions.parameters(), lr=0.05)
    first = last = None
    for _ in range(steps):
        value = loss([teacher], [student])
        first = float(value.detach()) if first is None else first
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        last = float(value.detach())
    return first, last


def test_mha_collapse_guard():
    """The shared module alone, trained on fixed, different maps, cannot drive the loss to zero;
    without the per-sample normalization it can (by shrinking both sides' attention)."""
    first, last = optimize_module_alone(normalize=True)
    assert last > 0.3 and last > 0.3 * first
    first_raw, last_raw = optimize_module_alone(normalize=False)
    assert last_raw < 0.01 * first_raw


def test_mhad_frozen_random_form_is_seeded_and_fixed():
    a = MHADLoss([8], [4], form="frozen_random", seed=3)
    b = MHADLoss([8], [4], form="frozen_random", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.attentions.parameters(), b.attentions.parameters()))
    assert not any(p.requires_grad for p in a.attentions.parameters())
    assert all(p.requires_grad for p in a.adapters.parameters())


# ------------------------------------------------------------------------- pool, frozen
def test_pool_fifo_capacity_sampling_and_state_round_trip():
    torch.manual_seed(0)
    pool = ImagePool(capacity=5)
    with pytest.raises(RuntimeError, match="empty"):
        pool.sample(2)
    pool.add(torch.rand(3, 3, 4, 4))
    newest = torch.rand(4, 3, 4, 4)
    pool.add(newest)
    assert len(pool) == 5 and pool.images.dtype == torch.uint8
    assert torch.allclose(pool.images[-4:].float() / 255, newest, atol=1 / 255)
    drawn = pool.sample(10)
    assert drawn.shape == (10, 3, 4, 4) and drawn.min() >= 0 and drawn.max() <= 1
    fresh = ImagePool(capacity=5)
    fresh.load_state_dict(pool.state_dict())
    assert torch.equal(fresh.images, pool.images)


def test_as_critic_changes_nothing_but_lets_input_gradients_through():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(2, 3, 6, 6))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 3, 6, 6, requires_grad=True)
    with as_critic(net):
        assert not net.training  # running BatchNorm statistics, not the batch's
        net(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters()) and all(p.requires_grad for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()) and net.training
