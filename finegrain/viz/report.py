"""``finegrain report RUN_DIR``: one HTML page with what a person looks at after a run.

Sections, each present when the run has what it needs:
  summary      method, backbone, parameters, test/val accuracy, speed (``summary.json``, ``model.json``)
  curves       every loss term per phase, learning rate, accuracy (``metrics.csv``)
  confusion    the test confusion matrix, the most confused class pairs, per-class accuracy
               (``eval_test.json``; computed from the test split when the run has none)
  predictions  sample test images with predicted vs true class
  attention    activation maps / CSDNet SSDP masks over the same images (``finegrain.viz.explain``)
  synthetic    data-free runs: synthesized images per teacher class with the teacher's confidence
               (``finegrain.viz.synthetic``)
  config       the run's ``config.yaml``
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from finegrain import methods
from finegrain.config import Config
from finegrain.data.transforms import denormalize
from finegrain.engine import checkpoint as ckpt
from finegrain.engine.evaluate import checkpoint_data_config, checkpoint_split, evaluate_checkpoint
from finegrain.errors import CheckpointError, DataError
from finegrain.importing import IMPORTED
from finegrain.inference import Predictor, classifier_from_checkpoint
from finegrain.viz.confusion import confusion_figure, most_confused
from finegrain.viz.curves import curves_figure, read_metrics
from finegrain.viz.grids import Prediction, prediction_grid, tile_images
from finegrain.viz.html import HtmlPage


#: test images drawn with their activation maps (a strip of four panels each).
EXPLAINED_IMAGES = 8


@dataclass
class Samples:
    """Sample test images: normalized model input, [0, 1] pictures, labels, predictions."""

    paths: list[str]
    inputs: torch.Tensor
    pictures: torch.Tensor
    labels: list[int]
    probabilities: torch.Tensor


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def test_split(meta: dict, data_root: str | None):
    """(config data section, test samples aligned to the model's classes), or (cfg, None) when the
    run's own dataset root is gone. An explicit ``data_root`` that fails is an error."""
    data_cfg = checkpoint_data_config(meta, data_root)
    if data_root is None and (data_cfg.root is None or not Path(data_cfg.root).exists()):
        return data_cfg, None
    return data_cfg, checkpoint_split(meta, data_cfg, data_cfg.test_split)


def pick_samples(samples: list[tuple[str, int]], n: int, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` images spread over the classes (round robin over shuffled per-class lists)."""
    rng = random.Random(seed)
    by_class: dict[int, list] = {}
    for item in samples:
        by_class.setdefault(item[1], []).append(item)
    pools = [rng.sample(items, len(items)) for _, items in sorted(by_class.items())]
    picked: list[tuple[str, int]] = []
    while len(picked) < n and any(pools):
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(pool.pop())
    return picked


@torch.no_grad()
def predict_samples(predictor: Predictor, picked: list[tuple[str, int]]) -> Samples:
    inputs = torch.stack([predictor.preprocess(path) for path, _ in picked])
    probabilities = predictor.model(inputs.to(predictor.device)).float().softmax(1).cpu()
    pictures = denormalize(inputs, predictor.meta["mean"], predictor.meta["std"])
    return Samples([p for p, _ in picked], inputs, pictures, [y for _, y in picked], probabilities)


def per_class_rows(result: dict, class_names: list[str]) -> list[dict]:
    rows = []
    for index, name in enumerate(class_names):
        row = result["confusion"][index]
        wrong = [(count, j) for j, count in enumerate(row) if j != index and count]
        worst = max(wrong) if wrong else None
        rows.append({"class": name, "test images": sum(row), "correct": row[index],
                     "accuracy %": float(result["per_class_acc"][index]),
                     "most often mistaken for": f"{class_names[worst[1]]} ({worst[0]})" if worst else "-"})
    return rows


class ReportBuilder:
    """Gathers a run's files and draws each section into an ``HtmlPage``."""

    def __init__(self, run_dir: Path, out_dir: Path | None = None, data_root: str | None = None,
                 device: str = "cpu", num_samples: int = 24):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise CheckpointError(f"run folder not found: {self.run_dir}")
        self.out_dir = Path(out_dir) if out_dir else self.run_dir / "report"
        self.data_root = data_root
        self.num_samples = num_samples
        self.model, self.meta = classifier_from_checkpoint(self.run_dir)
        self.predictor = Predictor(self.model, self.meta, device)
        self.class_names = list(self.meta["class_names"])
        self.method_name = self.meta.get("method") or self.meta.get("config", {}).get("method", {}).get("name", "?")
        # a model brought in with `finegrain import-model` was trained by no finegrain method
        self.method_info = None if self.method_name == IMPORTED else methods.get(self.method_name)
        self.summary = read_json(self.run_dir / "summary.json") or {}
        self.page = HtmlPage(f"finegrain report: {self.run_dir.name}", self.out_dir)

    # ------------------------------------------------------------------------------ build
    def build(self) -> Path:
        self.section_summary()
        self.section_curves()
        data_cfg, test = test_split(self.meta, self.data_root)
        result = self.test_result(data_cfg, test)
        if result is not None:
            self.section_confusion(result)
        samples = None
        if test:
            samples = predict_samples(self.predictor, pick_samples(test, self.num_samples))
            self.section_predictions(samples)
        else:
            self.page.heading("Test images", f"no test images: dataset root {data_cfg.root} not found; "
                                             f"pass --data ROOT to draw predictions and attention maps")
        if samples is not None and self.wants_explain():
            self.section_attention(samples)
        if self.method_info and not self.method_info.cls.needs_train_data:
            self.section_synthetic()
        self.section_config()
        return self.page.write()

    def wants_explain(self) -> bool:
        """CSDNet runs always (their masks are the point); other runs when the module is installed."""
        return self.method_name == "csdnet" or importlib.util.find_spec("finegrain.viz.explain") is not None

    # --------------------------------------------------------------------------- sections
    def section_summary(self) -> None:
        s, m = self.summary, self.meta
        page = self.page
        page.heading("Summary")
        cards = {}
        for key, label in (("test_top1", "test top-1"), ("test_top5", "test top-5"),
                           ("test_mean_class_acc", "mean class acc"), ("best_val_top1", "best val top-1")):
            if s.get(key) is not None:
                cards[label] = f"{s[key]:.1f}%"
        page.cards(cards)
        params = sum(p.numel() for p in self.model.parameters())
        facts = {"run folder": str(self.run_dir.resolve()), "method": self.method_name,
                 "method description": self.method_info.description if self.method_info else
                 f"imported from {m.get('source', {}).get('file', '?')}",
                 "backbone": m["architecture"], "classes": len(self.class_names), "parameters": f"{params:,}",
                 "image size": f"{m['image_size']} px (crop ratio {m['crop_ratio']})",
                 "epochs": s.get("epochs", m.get("epoch")),
                 "training time": f"{s['train_seconds']:.0f} s" if "train_seconds" in s else "-",
                 "training images/s": f"{s['images_per_s']:.1f}" if s.get("images_per_s") else "-",
                 "finegrain version": m.get("finegrain_version", "-")}
        page.table([{"": k, "value": str(v)} for k, v in facts.items()])

    def section_curves(self) -> None:
        path = self.run_dir / "metrics.csv"
        self.page.heading("Training curves")
        rows = read_metrics(path) if path.is_file() else []
        if not rows:
            self.page.note(f"{path} is missing or empty")
            return
        self.page.picture("curves", curves_figure(rows),
                          "losses per phase (per step, or per-epoch means where steps were logged more sparsely; long "
                          "per-step curves: faint raw, bold running mean), learning rate, accuracy")

    def test_result(self, data_cfg, test) -> dict | None:
        result = read_json(self.run_dir / "eval_test.json")
        if result is not None:
            return result
        if not test:
            self.page.heading("Confusion matrix", "no eval_test.json in the run and no test images to compute it")
            return None
        result = evaluate_checkpoint(self.model, self.meta, data_cfg.root, data_cfg.format, data_cfg.test_split,
                                     device=str(self.predictor.device), num_workers=0)
        return {"class_names": self.class_names, **result}

    def section_confusion(self, result: dict) -> None:
        if list(result.get("class_names", self.class_names)) != self.class_names:
            raise DataError(f"{self.run_dir / 'eval_test.json'}: class names differ from the model's")
        page = self.page
        page.heading("Confusion matrix", f"test split, {result['n']} images: top-1 {result['top1']:.2f}%, "
                                         f"top-5 {result['top5']:.2f}%, mean per-class {result['mean_class_acc']:.2f}%")
        page.picture("confusion", confusion_figure(result["confusion"], self.class_names),
                     "rows: true class, normalized to 1; numbers: image counts")
        pairs = most_confused(result["confusion"], self.class_names, k=10)
        page.heading("Most confused class pairs")
        if pairs:
            page.table([p.as_row() for p in pairs])
        else:
            page.note("no test image was misclassified")
        page.heading("Per-class accuracy", "sorted from worst to best")
        rows = sorted(per_class_rows(result, self.class_names), key=lambda r: (r["accuracy %"], r["class"]))
        page.table(rows, bars={"accuracy %": 100.0})

    def section_predictions(self, samples: Samples) -> None:
        top = samples.probabilities.max(1)
        items = [Prediction(picture, self.class_names[label], self.class_names[index], value)
                 for picture, label, value, index in zip(samples.pictures, samples.labels, top.values.tolist(),
                                                         top.indices.tolist())]
        right = sum(item.correct for item in items)
        self.page.heading("Test images with predictions",
                          f"{len(items)} test images spread over the classes, as the model sees them "
                          f"(resized and center-cropped): {right} right, {len(items) - right} wrong")
        self.page.picture("predictions", prediction_grid(items), "green: right, red: wrong; predicted class "
                                                                 "with its probability, true class when wrong")

    def section_attention(self, samples: Samples) -> None:
        from finegrain.viz.explain import explain

        ssdp_cfg = None
        if self.method_name == "csdnet":  # the run's own SSDP settings, as a typed config section
            ssdp_cfg = Config.from_dict(self.meta.get("config", {}), self.meta["_path"]).csdnet
        count = min(EXPLAINED_IMAGES, len(samples.labels))
        strips = explain(self.model, samples.inputs[:count], self.meta["mean"], self.meta["std"], ssdp_cfg=ssdp_cfg)
        title = "SSDP masks and attention maps" if self.method_name == "csdnet" else "Activation maps and SSDP view"
        names = ", ".join(self.class_names[y] for y in samples.labels[:count])
        self.page.heading(title, f"where the network looks: the first {count} test images of the grid above "
                                 f"({names}); per image: input, activation map, the salient region SSDP "
                                 f"keeps or erases, the augmented view")
        self.page.picture("attention", tile_images(strips, columns=2), "activation maps (finegrain.viz.explain)")

    def section_synthetic(self) -> None:
        from finegrain.viz.synthetic import synthetic_grid

        found = ckpt.list_checkpoints(self.run_dir / "checkpoints")
        self.page.heading("Synthesized images", "data-free run: images the generator makes for each teacher "
                                                "class and the teacher's confidence on them")
        if not found:
            self.page.note(f"no checkpoint with the generator in {self.run_dir / 'checkpoints'}")
            return
        grid, stats = synthetic_grid(found[0], n=64, seed=0)
        self.page.picture("synthetic", grid, f"from {found[0].name}, {stats['n']} samples, seed {stats['seed']}; "
                                             f"under each: the teacher's class and confidence")
        self.page.note(f"the teacher assigns the {stats['n']} images to {stats['classes_covered']} of "
                       f"{len(self.class_names)} classes, mean confidence {100 * stats['mean_confidence']:.1f}%")
        self.page.table(synthetic_rows(stats, self.class_names), bars={"synthetic images": float(stats["n"])})

    def section_config(self) -> None:
        self.page.heading("Configuration")
        path = self.run_dir / "config.yaml"
        self.page.preformatted(path.read_text() if path.is_file() else json.dumps(self.meta.get("config", {}), indent=2))


def synthetic_rows(stats: dict, class_names: list[str]) -> list[dict]:
    """Per teacher class: how many synthetic images the teacher assigns to it, with what confidence."""
    counts, confidence = stats["class_counts"], stats["mean_confidence_per_class"]
    rows = [{"teacher class": name, "synthetic images": counts.get(name, 0),
             "mean teacher confidence %": 100.0 * confidence[name] if name in confidence else "-"}
            for name in class_names]
    return sorted(rows, key=lambda r: (-r["synthetic images"], r["teacher class"]))


def build_report(run_dir, out_dir=None, data_root=None, device: str = "cpu", num_samples: int = 24) -> Path:
    """Write the report of ``run_dir``; returns the path of its ``index.html``."""
    return ReportBuilder(Path(run_dir), out_dir, data_root, device, num_samples).build()
