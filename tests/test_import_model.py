"""`finegrain import-model`: a plain timm state dict becomes a model folder that every command taking
a run accepts (eval, predict, export, report, distill --teacher); bad files are refused by name."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import finegrain
from conftest import make_imagefolder
from finegrain.cli import main
from finegrain.errors import CheckpointError, ConfigError
from finegrain.importing import import_model, preprocessing
from finegrain.models import create_classifier, load_pretrained
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)

CLASSES = ["class_0", "class_1", "class_2"]


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "finegrain", *map(str, args)], capture_output=True, text=True, env=env)


def timm_net(arch="test_resnet", classes=3, seed=0):
    torch.manual_seed(seed)
    return timm.create_model(arch, num_classes=classes).eval()


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A timm classifier saved the way DDP training code saves it (``module.`` prefix), its class
    list, a tiny dataset with the same classes, and the folder `finegrain import-model` makes of it."""
    base = tmp_path_factory.mktemp("foreign")
    net = timm_net()
    weights = base / "resnet.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    classes = base / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n")
    root = make_imagefolder(base / "data", classes=3, counts={"train": 2, "val": 1, "test": 3})
    eval_only = base / "eval_only"
    shutil.copytree(root / "test", eval_only / "test")
    result = cli("import-model", weights, "--arch", "test_resnet", "--classes", classes, "--image-size", "32",
                 "--mean", "0.5", "0.4", "0.3", "--std", "0.2", "0.2", "0.2")
    assert result.returncode == 0, result.stderr
    return {"net": net, "weights": weights, "classes": classes, "root": root, "eval_only": eval_only,
            "folder": base / "resnet-finegrain", "printed": json.loads(result.stdout)}


def test_import_writes_a_model_folder_that_reproduces_the_network(foreign):
    folder = foreign["folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    meta = json.loads((folder / "model.json").read_text())
    assert (meta["method"], meta["architecture"], meta["class_names"]) == ("imported", "test_resnet", CLASSES)
    assert (meta["image_size"], meta["mean"], meta["std"]) == (32, [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    assert meta["crop_ratio"] == 0.95  # not given: timm's crop_pct for test_resnet
    assert meta["source"]["file"] == str(foreign["weights"]) and len(meta["source"]["sha256"]) == 64
    assert foreign["printed"]["keys_matched_by"] == "names"

    model = finegrain.load(folder)
    image = next((foreign["root"] / "test" / "class_1").glob("*.jpg"))
    with torch.no_grad():
        expected = foreign["net"](model.preprocess(image)[None]).softmax(1)[0]
    top = model.predict([image], top_k=3)[0]
    assert [name for name, _ in top] == [CLASSES[i] for i in expected.argsort(descending=True).tolist()]
    assert [p for _, p in top] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-6)


def test_eval_predict_export_and_report_take_the_folder(foreign, tmp_path, capsys):
    folder, root = foreign["folder"], foreign["root"]
    assert main(["eval", str(folder), "--data", str(root), "--num-workers", "0", "--device", "cpu"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["images"] == 9 and 0 <= evaluated["top1"] <= 100

    csv = tmp_path / "p.csv"
    assert main(["predict", str(folder), str(root / "test"), "--csv", str(csv), "--device", "cpu"]) == 0
    assert len(csv.read_text().splitlines()) == 1 + 9

    exported = tmp_path / "model.pt"
    assert main(["export", str(folder), "--format", "torchscript", "--out", str(exported)]) == 0
    assert exported.is_file() and "parity vs PyTorch" in capsys.readouterr().out

    assert main(["report", str(folder), "--data", str(root), "--out", str(tmp_path / "report"), "--device", "cpu",
                 "--samples", "3"]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "imported from" in page and "Confusion matrix" in page


def test_distill_takes_the_imported_folder_as_teacher(foreign, tmp_path):
    args = ["distill", "--config", "datafree_paper", "--teacher", str(foreign["folder"]), "--student",
            "test_efficientnet", "--eval-data",
            str(foreign["eval_only"]), "--out", str(tmp_path), "--name", "student", "--accelerator", "cpu",
            "--epochs", "1", "data.batch_size=4", "data.num_workers=0", "distill.generator_steps=1",
            "distill.student_steps=1", "train.iterations_per_epoch=2", "generator.channels=[32,16,16,8,8]",
            "generator.noise_dim=16"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "student" / "summary.json").read_text())
    assert summary["method"] == "dfkd-fgvc" and "test_top1" in summary
    student = json.loads((tmp_path / "student" / "model.json").read_text())
    assert student["class_names"] == CLASSES and student["image_size"] == 32  # the teacher's preprocessing
    assert student["mean"] == [0.5, 0.4, 0.3] and summary["architecture"] == "test_efficientnet"


def test_torch_file_with_model_prefix_inside_a_state_dict_entry(tmp_path):
    net = timm_net(seed=1)
    weights = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, weights)
    result = import_model(weights, "test_resnet", CLASSES, tmp_path / "m", image_size=32)
    loaded = finegrain.load(tmp_path / "m").model
    assert all(torch.equal(loaded.net.state_dict()[k], v) for k, v in net.state_dict().items())
    assert result.max_abs_diff == 0.0
    with pytest.raises(CheckpointError, match="model.json exists; pass --force"):
        import_model(weights, "test_resnet", CLASSES, tmp_path / "m")


def test_malicious_pickle_is_refused_by_name_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "owned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    weights = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "fc.bias": Payload()}, weights)
    torch.load(weights, weights_only=False)  # the control: full unpickling does run the payload
    assert marker.exists()
    marker.unlink()

    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\nc\n")
    code = main(["import-model", str(weights), "--arch", "test_resnet", "--classes", str(classes),
                 "--out", str(tmp_path / "m")])
    assert code == 2 and not marker.exists() and not (tmp_path / "m").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{weights}: cannot read weights safely" in lines[0]


def test_bad_keys_and_class_counts_name_the_file_and_the_first_bad_key(tmp_path):
    state = timm_net().state_dict()
    cases = {
        "other_arch": (timm_net("test_efficientnet").state_dict(), "test_resnet",
                       r"key '[\w.]+' is not a tensor of test_resnet .*wrong --arch"),
        "class_count": (state, "test_resnet", r"key 'fc.bias' has 3 outputs, but the class list names 4 classes"),
        "missing": ({k: v for k, v in state.items() if k != "fc.bias"}, "test_resnet", r"key 'fc.bias' .* missing"),
    }
    for name, (tensors, arch, message) in cases.items():
        weights = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(weights))
        with pytest.raises(CheckpointError, match=rf"{weights}: {message}"):
            import_model(weights, arch, CLASSES + (["class_3"] if name == "class_count" else []), tmp_path / name)
        assert not (tmp_path / name).exists()


def test_class_list_file_errors(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\na\n")
    with pytest.raises(ConfigError, match=r"classes.txt:3: class 'a' repeats line 1"):
        import_model(tmp_path / "none.safetensors", "test_resnet", classes)


def test_timm_pretrained_tags_build_without_downloading(monkeypatch):
    import timm.models._builder as builder

    def no_download(*args, **kwargs):
        raise AssertionError("pretrained weights were requested")

    monkeypatch.setattr(builder, "load_pretrained", no_download)
    model = create_classifier("resnet18.a1_in1k", 3)
    assert model.arch == "resnet18.a1_in1k" and model.net.pretrained_cfg["tag"] == "a1_in1k"
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ConfigError, match="unknown pretrained tag 'nope' of architecture 'resnet18'"):
        create_classifier("resnet18.nope", 3)
    # the tag's preprocessing is the default of an import
    assert preprocessing("vit_base_patch16_224.augreg_in21k")["mean"] == [0.5, 0.5, 0.5]
    assert preprocessing("resnet18.a1_in1k")["crop_ratio"] == 0.95


def test_local_weights_in_an_original_format_go_through_timms_conversion(tmp_path):
    """An OpenCLIP-style ViT (timm trunk under ``visual.trunk.``): timm's own checkpoint filter of
    the ViT family maps it, where names and positions alone would not."""
    source = timm_net("test_vit", classes=10)
    weights = tmp_path / "openclip.safetensors"
    save_file({f"visual.trunk.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    target = create_classifier("test_vit", 3)
    report = load_pretrained(target.net, weights)
    assert report["matched_by"] == "timm" and "head.weight" in report["skipped"]
    assert torch.equal(target.net.state_dict()["patch_embed.proj.weight"], source.state_dict()["patch_embed.proj.weight"])


def test_torchvision_state_dict_imports_under_timms_names(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=3).eval()
    weights = tmp_path / "tv_resnet18.pth"
    torch.save(tv.state_dict(), weights)
    result = import_model(weights, "resnet18.tv_in1k", CLASSES, image_size=64)
    assert result.folder == tmp_path / "tv_resnet18-finegrain" and result.matched_by == "names"
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(finegrain.load(result.folder).model(images), tv(images), atol=1e-5)
