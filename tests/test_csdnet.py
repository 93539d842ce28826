"""CSDNet: its three modules (SSDP, DDL, SSDT), their switches, training end to end, DDP queue, explain."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import exported_models_equal, tiny_config
from finegrain import methods
from finegrain.config import Config
from finegrain.engine.loop import fit
from finegrain.errors import ConfigError
from finegrain.inference import classifier_from_checkpoint, load
from finegrain.losses.queue_contrastive import MemoryQueue, QueueContrastiveLoss
from finegrain.losses.self_distillation import SelfDistillationLoss
from finegrain.models import create_classifier
from finegrain.models.heads import ProjectionHead
from finegrain.models.ssdp import SSDP, random_view, region_boxes, warp


def hot_quadrant_map(b=2, c=4, size=8):
    """A feature map whose activation sits in the top-left quadrant."""
    fmap = torch.zeros(b, c, size, size)
    fmap[:, :, : size // 2, : size // 2] = 1.0
    return fmap


# ------------------------------------------------------------------------------------------ SSDP
def test_ssdp_erase_zeroes_exactly_the_salient_region():
    images = torch.randn(2, 3, 32, 32)
    ssdp = SSDP(theta_min=0.5, theta_max=0.5, p_drop=1.0, kernel_size=1, flip_prob=0.0, rotation=0.0)
    out = ssdp(images, hot_quadrant_map())
    assert out.view.shape == images.shape and out.saliency.shape == (2, 1, 32, 32)
    assert out.erased.all() and 0 <= out.saliency.min() and out.saliency.max() <= 1
    region = out.region[:, 0]
    assert region[:, :12, :12].all() and not region[:, 20:, :].any() and not region[:, :, 20:].any()
    assert torch.all(out.view[:, :, :12, :12] == 0)
    assert torch.allclose(out.view[:, :, 20:, 20:], images[:, :, 20:, 20:], atol=1e-5)


def test_ssdp_crop_zooms_into_the_salient_region():
    images = torch.zeros(1, 3, 32, 32)
    images[:, :, :16, :16] = 1.0  # bright where the network looks
    ssdp = SSDP(theta_min=0.5, theta_max=0.5, p_drop=0.0, kernel_size=1, flip_prob=0.0, rotation=0.0)
    out = ssdp(images, hot_quadrant_map(b=1))
    assert not out.erased.any()
    assert out.view.mean() > 0.9  # the crop fills the frame with the salient quadrant
    box = region_boxes(out.region)[0]
    assert box[0] == -1 and box[1] == -1 and 0.0 <= box[2] <= 0.25 and 0.0 <= box[3] <= 0.25


def test_ssdp_mask_is_detached_and_kernel_scales():
    fmap = hot_quadrant_map().requires_grad_()
    out = SSDP(kernel="gaussian")(torch.randn(2, 3, 64, 64), fmap)
    assert not out.view.requires_grad and not out.saliency.requires_grad
    from finegrain.models.ssdp import scaled_kernel

    assert scaled_kernel(7, 224, 224) == 7 and scaled_kernel(7, 448, 224) == 15 and scaled_kernel(7, 32, 224) == 1


def test_warp_flips_and_random_view_crops_inside_the_image():
    images = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4).contiguous()
    whole = torch.tensor([[-1.0, -1.0, 1.0, 1.0]])
    assert torch.allclose(warp(images, whole, torch.tensor([True]), torch.zeros(1)), images.flip(3), atol=1e-4)
    torch.manual_seed(0)
    view = random_view(torch.ones(8, 3, 16, 16), min_scale=0.3, flip_prob=0.5, rotation=0.0)
    assert view.shape == (8, 3, 16, 16) and torch.allclose(view, torch.ones_like(view), atol=1e-4)


# ------------------------------------------------------------------------------------------- DDL
def test_projection_head_shapes_norm_and_gradients():
    head = ProjectionHead(32, 16, 8)
    features = torch.randn(5, 32, requires_grad=True)
    z = head(features)
    assert z.shape == (5, 8) and torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
    z.sum().backward()
    assert features.grad is not None and all(p.grad is not None for p in head.parameters())


def test_queue_is_fifo_with_labels_aligned_and_checkpoints():
    queue = MemoryQueue(5, 2)
    feats = torch.arange(14.0).view(7, 2)
    labels = torch.arange(7)
    queue.enqueue(feats[:3], labels[:3])
    stored, stored_labels = queue.contents()
    assert len(queue) == 3 and torch.equal(stored, feats[:3]) and torch.equal(stored_labels, labels[:3])
    queue.enqueue(feats[3:], labels[3:])  # 7 in a queue of 5: the two oldest go
    stored, stored_labels = queue.contents()
    assert len(queue) == 5 and torch.equal(stored, feats[2:]) and torch.equal(stored_labels, labels[2:])
    assert torch.equal(stored[:, 0] / 2, stored_labels.float())  # each feature still next to its label
    copy = MemoryQueue(5, 2)
    copy.load_state_dict(queue.state_dict())
    assert torch.equal(copy.contents()[0], stored) and set(queue.state_dict()) >= {"features", "labels", "pointer", "filled"}


def test_margin_loss_zero_when_classes_coincide_and_are_far():
    loss = QueueContrastiveLoss(margin=0.5)
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    z = torch.stack([e0, e0, e1])
    labels = torch.tensor([0, 0, 1])
    memory, memory_labels = torch.stack([e0, e1, e1]), torch.tensor([0, 1, 1])
    assert loss(z, labels, memory, memory_labels).item() == pytest.approx(0.0, abs=1e-6)
    near = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.9, 0.5]]), dim=1).requires_grad_()
    value = loss(near, labels, memory, memory_labels)
    assert value.item() > 0
    value.backward()
    assert near.grad.abs().sum() > 0


def test_margin_loss_counts_only_negatives_above_margin():
    loss = QueueContrastiveLoss(margin=0.5)
    a = torch.tensor([[1.0, 0.0]])
    at_angle = lambda s: torch.tensor([[s, (1 - s * s) ** 0.5]])  # noqa: E731  cosine similarity s with a
    assert loss(a, torch.tensor([0]), at_angle(0.4), torch.tensor([1])).item() == pytest.approx(0.0)
    assert loss(a, torch.tensor([0]), at_angle(0.7), torch.tensor([1])).item() == pytest.approx(0.7, abs=1e-5)
    assert loss(a, torch.tensor([0]), at_angle(0.7), torch.tensor([0])).item() == pytest.approx(0.3, abs=1e-5)


def test_loss_sums_over_the_pairs_so_it_grows_with_the_queue():
    a = torch.tensor([[1.0, 0.0]])
    at_angle = lambda s: torch.tensor([[s, (1 - s * s) ** 0.5]])  # noqa: E731  cosine similarity s with a
    negative, positive = at_angle(0.7), at_angle(0.8)
    short = (torch.cat([negative, positive]), torch.tensor([1, 0]))
    long = (torch.cat([negative] * 10 + [positive] * 10), torch.tensor([1] * 10 + [0] * 10))
    summed = QueueContrastiveLoss(0.5)
    assert summed(a, torch.tensor([0]), *short).item() == pytest.approx(0.7 + 0.2, abs=1e-5)
    assert summed(a, torch.tensor([0]), *long).item() == pytest.approx(10 * (0.7 + 0.2), abs=1e-4)


# ------------------------------------------------------------------------------------------ SSDT
def test_self_distillation_zero_for_identical_views_and_stops_raw_gradient():
    logits = torch.randn(4, 5)
    assert SelfDistillationLoss(4.0)(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-6)
    raw, aug = torch.randn(4, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    value = SelfDistillationLoss(4.0)(raw, aug)
    value.backward()
    assert value.item() > 0 and raw.grad is None and aug.grad.abs().sum() > 0
    raw.grad = aug.grad = None
    SelfDistillationLoss(4.0, symmetric=True)(raw, aug).backward()
    assert raw.grad.abs().sum() > 0 and aug.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------- method
def method_config(**csdnet):
    cfg = Config()
    cfg.model.name = "test_resnet"
    cfg.optim.lr = 0.05
    cfg.optim.weight_decay = 0.0
    cfg.data.image_size = 32
    for key, value in csdnet.items():
        cfg.set(f"csdnet.{key}", value)
    return cfg


def tiny_batch(n=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randn(n, 3, 32, 32, generator=g) * 0.3 + labels.view(n, 1, 1, 1).float() - 1
    return images, labels


def make_method(**csdnet):
    torch.manual_seed(0)
    return methods.create("csdnet", method_config(**csdnet), ["a", "b", "c"], num_train=12)


def test_step_returns_all_terms_and_gradients_reach_backbone_and_head():
    method = make_method()
    out = method.step("train", tiny_batch())
    assert {"loss", "ce", "qc", "ssdt", "train_acc"} <= set(out)
    out["loss"].backward()
    assert all(p.grad is not None for p in method.model.parameters() if p.requires_grad)
    assert all(p.grad is not None for p in method.projection.parameters())
    assert method.pending["view"].shape == (6, 3, 32, 32) and method.queue.capacity == 24


@pytest.mark.parametrize("switch, term", [("ddl", "qc"), ("ssdt", "ssdt")])
def test_switching_a_module_off_removes_its_term_and_its_cost(switch, term):
    method = make_method(**{switch: False})
    out = method.step("train", tiny_batch())
    assert term not in out and {"loss", "ce"} <= set(out)
    if switch == "ddl":
        assert not hasattr(method, "projection") and not hasattr(method, "queue")
        plain = create_classifier("test_resnet", 3)
        assert sum(p.numel() for p in method.parameters()) == sum(p.numel() for p in plain.parameters())


def test_switching_ssdp_off_uses_a_random_view_in_the_same_step(monkeypatch):
    method = make_method(ssdp=False)
    calls = []
    original = method.model.forward_taps
    monkeypatch.setattr(method.model, "forward_taps", lambda x, **kw: calls.append(x.shape[0]) or original(x, **kw))
    method.step("train", tiny_batch())
    assert method.ssdp is None and method.pending is None and calls == [12]  # one concatenated forward


def test_previous_step_pairs_concatenate_and_current_runs_raw_first(monkeypatch):
    for source, expected in (("previous_step", [12, 12]), ("current", [6, 6, 6, 6])):
        method = make_method(mask_source=source)
        calls = []
        original = method.model.forward_taps
        monkeypatch.setattr(method.model, "forward_taps", lambda x, **kw: calls.append(x.shape[0]) or original(x, **kw))
        method.step("train", tiny_batch(seed=1))
        pending = method.pending
        method.step("train", tiny_batch(seed=2))
        assert calls == expected, source
        if source == "previous_step":  # step 2 distils the view of step 1's images, made from their own map
            assert pending is not None and method.pending is not pending


def test_incompatible_ssdt_direction_is_a_config_error():
    with pytest.raises(ConfigError, match="csdnet.mask_source=previous_step"):
        make_method(ssdt_symmetric=True)
    assert make_method(ssdt_symmetric=True, mask_source="current").step("train", tiny_batch())["ssdt"] >= 0


def test_a_few_steps_lower_the_loss():
    method = make_method(warmup_epochs=0)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    batch = tiny_batch()
    losses = []
    for _ in range(12):
        out = method.step("train", batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert sum(losses[-3:]) < sum(losses[:3])


def test_fit_end_to_end_and_checkpoint_is_the_plain_backbone(imagefolder, tmp_path):
    cfg = tiny_config(imagefolder, tmp_path / "runs", **{"method.name": "csdnet", "train.epochs": 2})
    summary = fit(cfg)
    assert summary["method"] == "csdnet" and 0 <= summary["test_top1"] <= 100
    history = summary["history"]
    assert "train/qc_mean" in history[1] and "train/ssdt_mean" in history[1]
    model, meta = classifier_from_checkpoint(summary["checkpoint"])
    plain = create_classifier("test_resnet", 3)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    predictor = load(summary["run_dir"])
    image = next((imagefolder / "test" / "class_0").iterdir())
    assert len(predictor.predict([image], top_k=2)[0]) == 2
    sidecar = json.loads(Path(summary["checkpoint"]).read_text())
    assert sidecar["method"] == "csdnet" and sidecar["config"]["csdnet"]["mask_source"] == "previous_step"


def test_resume_mid_epoch_continues_exactly(imagefolder, tmp_path):
    settings = {"method.name": "csdnet", "train.epochs": 2}
    whole = fit(tiny_config(imagefolder, tmp_path / "a", **settings))
    fit(tiny_config(imagefolder, tmp_path / "b", **settings, **{"train.stop_after_steps": 8}))
    resumed = fit(tiny_config(imagefolder, tmp_path / "b", **settings), resume="auto")
    assert exported_models_equal(whole, resumed)


# ------------------------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _queue_worker(rank, port, results):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    queue = MemoryQueue(8, 2)
    feats = torch.full((rank + 2, 2), float(rank))  # ranks hold batches of different sizes
    queue.enqueue(feats, torch.full((rank + 2,), rank))
    stored, labels = queue.contents()
    results[rank] = (stored.tolist(), labels.tolist())
    dist.destroy_process_group()


def test_queue_is_gathered_across_two_processes():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_queue_worker, args=(_free_port(), results), nprocs=2, join=True)
        results = dict(results)
    expected_labels = [0, 0, 1, 1, 1]
    for rank in (0, 1):
        stored, labels = results[rank]
        assert labels == expected_labels
        assert [row[0] for row in stored] == [float(v) for v in expected_labels]


# --------------------------------------------------------------------------------------- explain
def test_explain_writes_four_panel_pngs(tmp_path, imagefolder):
    from finegrain.viz.explain import explain

    classifier = create_classifier("test_resnet", 3)
    strips = explain(classifier, torch.randn(2, 3, 32, 32), [0.5] * 3, [0.25] * 3)
    assert len(strips) == 2 and strips[0].size[0] == 4 * 32 and strips[0].mode == "RGB"

    summary = fit(tiny_config(imagefolder, tmp_path / "runs", **{"method.name": "csdnet", "train.epochs": 1}))
    images = sorted((imagefolder / "test" / "class_2").iterdir())[:2]
    result = subprocess.run([sys.executable, "-m", "finegrain", "explain", summary["run_dir"], *map(str, images),
                             "--out", str(tmp_path / "pngs")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    written = sorted((tmp_path / "pngs").glob("*_explain.png"))
    assert [p.name for p in written] == sorted(f"{p.stem}_explain.png" for p in images)
