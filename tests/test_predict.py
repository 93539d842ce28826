"""`finegrain predict ... --csv`: folders walked, batches predicted, CSV that reads back; and the
README's Python API example, run as written on a tiny run."""

import ast
import csv
import re
from pathlib import Path

import pytest

from conftest import tiny_config
from finegrain.engine.loop import fit
from finegrain.inference import load

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import make_imagefolder

    base = tmp_path_factory.mktemp("predict")
    data = make_imagefolder(base / "data")
    return Path(fit(tiny_config(data, base / "runs", **{"train.epochs": 1}))["run_dir"]), data


def run_cli(capsys, *args):
    """The CLI in-process (a subprocess would spend seconds importing torch per call)."""
    from finegrain.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_folder_to_csv_round_trip(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    extra = next((data / "train" / "class_2").iterdir())
    (data / "test" / "notes.txt").write_text("not an image")
    out = tmp_path / "out" / "pred.csv"
    code, stdout, stderr = run_cli(capsys, "predict", run, data / "test", extra, "--csv", out, "--top-k", "2",
                                   "--batch-size", "4", "--device", "cpu")  # as load() below: same arithmetic
    assert code == 0, stderr
    assert "wrote 10 predictions" in stdout and "predict 10/10" in stdout  # plain progress: not a TTY
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "class_1", "prob_1", "class_2", "prob_2"]
    test_images = sorted(str(p) for p in (data / "test").rglob("*.jpg"))
    assert [r["path"] for r in rows] == test_images + [str(extra)]
    predictor = load(run)
    expected = predictor.predict([r["path"] for r in rows], top_k=2)
    for row, top in zip(rows, expected):
        assert [row["class_1"], row["class_2"]] == [name for name, _ in top]
        assert float(row["prob_1"]) == pytest.approx(top[0][1], abs=1e-5)
        assert float(row["prob_1"]) >= float(row["prob_2"])


def test_predict_without_csv_prints_as_before_and_bad_input_is_one_line(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    image = next((data / "test" / "class_0").iterdir())
    code, stdout, _ = run_cli(capsys, "predict", run, image, "--top-k", "2")
    assert code == 0 and str(image) in stdout and stdout.count("%  class_") == 2
    code, _, stderr = run_cli(capsys, "predict", run, tmp_path / "missing", "--csv", tmp_path / "x.csv")
    assert code == 2 and "missing: no such image file or folder" in stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, stderr = run_cli(capsys, "predict", run, empty, "--csv", tmp_path / "x.csv")
    assert code == 2 and "no images" in stderr


def readme_api_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "finegrain.load(" in b]
    assert found, "README.md has a Python example calling finegrain.load(...)"
    return found[0]


def test_readme_python_api_example_runs(tiny_run, capsys):
    run, data = tiny_run
    code = readme_api_example()
    paths = re.findall(r'"([^"]+)"', code)
    assert paths[0] == "runs/flowers" and paths[1].endswith(".jpg")
    image = next((data / "test" / "class_1").iterdir())
    code = code.replace(f'"{paths[0]}"', repr(str(run))).replace(f'"{paths[1]}"', repr(str(image)))
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(["class_0", "class_1", "class_2"])
    top = ast.literal_eval(lines[1])  # a list with one top-3 list of (class name, probability)
    assert len(top) == 1 and len(top[0]) == 3 and sum(p for _, p in top[0]) == pytest.approx(1.0, abs=1e-4)
