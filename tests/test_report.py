"""`finegrain report` on a tiny run: the page, every PNG it links, and the sections' contents."""

import base64
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from finegrain.engine.loop import fit
from finegrain.viz.confusion import most_confused
from finegrain.viz.curves import loss_series, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.srcs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self.hrefs.append(attrs["href"])
        if tag == "img":
            self.srcs.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import make_imagefolder

    base = tmp_path_factory.mktemp("report")
    data = make_imagefolder(base / "data")
    summary = fit(tiny_config(data, base / "runs"))
    return Path(summary["run_dir"]), data


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "finegrain", *map(str, args)], capture_output=True, text=True)


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text())
    return links


def test_report_writes_html_and_every_linked_png(tiny_run, tmp_path):
    run, _ = tiny_run
    result = run_cli("report", run, "--out", tmp_path / "rep", "--samples", "6")
    assert result.returncode == 0, result.stderr
    page = tmp_path / "rep" / "index.html"
    links = parse(page)
    pngs = [h for h in links.hrefs if h.endswith(".png")]
    assert {"curves.png", "confusion.png", "predictions.png"} <= set(pngs)
    for name in pngs:
        assert (tmp_path / "rep" / name).read_bytes().startswith(PNG_MAGIC), name
    # self-contained: each picture is also embedded, byte-identical to the file beside the page
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in links.srcs if s.startswith("data:image/png;base64,")]
    assert len(embedded) == len(links.srcs) == len(set(pngs))
    assert sorted(embedded) == sorted((tmp_path / "rep" / n).read_bytes() for n in set(pngs))
    text = " ".join(links.text)
    for heading in ("Summary", "Training curves", "Confusion matrix", "Most confused class pairs",
                    "Per-class accuracy", "Test images with predictions", "Configuration"):
        assert heading in text
    assert "class_0" in text and "test_resnet" in text


def test_report_numbers_match_the_run(tiny_run, tmp_path):
    from finegrain.viz.report import build_report

    run, _ = tiny_run
    page = build_report(run, tmp_path / "rep", num_samples=3)
    summary = json.loads((run / "summary.json").read_text())
    text = " ".join(parse(page).text)
    assert f"{summary['test_top1']:.1f}%" in text
    result = json.loads((run / "eval_test.json").read_text())
    # per-class table: every class with its test count and accuracy
    for name, acc in zip(result["class_names"], result["per_class_acc"]):
        assert re.search(rf"{name}\s*3\s*\d\s*{acc:.2f}", text), name


def test_report_without_eval_json_recomputes_it_from_the_test_split(tiny_run, tmp_path):
    import shutil

    from finegrain.viz.report import build_report

    run, data = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "eval_test.json").unlink()
    page = build_report(copy, data_root=str(data), num_samples=3)
    original = json.loads((run / "eval_test.json").read_text())
    assert f"top-1 {original['top1']:.2f}%" in page.read_text()


def test_report_with_missing_data_root_says_so(tiny_run, tmp_path):
    import shutil

    from finegrain.viz.report import build_report

    run, data = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    shutil.rmtree(data)
    try:
        page = build_report(copy)
        assert "dataset root" in page.read_text() and "--data ROOT" in page.read_text()
        assert not (page.parent / "predictions.png").exists()
        assert (page.parent / "confusion.png").exists()  # from eval_test.json alone
    finally:
        shutil.copytree(moved, data)


def test_loss_series_splits_phases_and_keeps_loop_order(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,epoch,train/generator/loss,train/student/loss,train/student/kd,train/student/train_acc,"
                    "train/images_per_s\n1,0,2.0,1.0,0.5,0.25,10\n2,0,1.5,0.8,0.4,0.5,11\n")
    series = loss_series(read_metrics(path))
    assert list(series) == ["generator", "student"]
    assert series["student"]["kd"] == ([1.0, 2.0], [0.5, 0.4])
    assert "train_acc" not in series["student"] and "images_per_s" not in series["student"]


def test_most_confused_ranks_off_diagonal_counts():
    confusion = np.array([[5, 3, 0], [1, 4, 0], [0, 3, 2]])
    pairs = most_confused(confusion, ["a", "b", "c"], k=2)
    assert [(p.true_class, p.predicted_class, p.count) for p in pairs] == [("c", "b", 3), ("a", "b", 3)]
    assert pairs[0].rate == pytest.approx(0.6)


def test_data_free_run_report_shows_synthetic_images_and_teacher_confidence(tiny_run, tmp_path):
    """A 2-iteration DFAD run from the tiny teacher: the page gets the synthetic grid and the
    per-class table (uses finegrain.viz.synthetic)."""
    from finegrain.viz.report import build_report

    teacher, data = tiny_run
    cfg = tiny_config(data, tmp_path / "runs", **{
        "train.epochs": 1, "train.run_name": "student", "method.name": "dfad", "distill.teacher": str(teacher),
        "distill.student": "test_resnet", "distill.generator_steps": 1, "distill.student_steps": 1,
        "train.iterations_per_epoch": 2})
    run = Path(fit(cfg)["run_dir"])
    page = build_report(run, num_samples=3)
    links = parse(page)
    assert "synthetic.png" in links.hrefs and (page.parent / "synthetic.png").read_bytes().startswith(PNG_MAGIC)
    text = " ".join(links.text)
    assert "Synthesized images" in text and "mean teacher confidence %" in text
    assert re.search(r"the teacher assigns the 64 images to [1-3] of 3 classes", text)
