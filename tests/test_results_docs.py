"""Figures in README.md, docs/*.md and benchmarks/RESULTS.md are the committed JSON's.

``benchmarks/results_md.py`` renders ``benchmarks/RESULTS.md`` and the blocks between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` from ``benchmarks/*.result.json``. These
tests fail when a generated file differs from what the JSON renders now (a figure edited by hand,
or a JSON committed without ``python -m benchmarks.results_md``), when the README shows a figure
outside a generated block, and when a document cites a file outside the repository.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIX = "run `python -m benchmarks.results_md` and commit what it writes"


def _load_results_md():
    spec = importlib.util.spec_from_file_location("results_md", ROOT / "benchmarks" / "results_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rm = _load_results_md()


def _blocks():
    out = []
    for path in rm.doc_files(ROOT):
        for name in rm.blocks_in(path.read_text(), str(path)):
            out.append((str(path.relative_to(ROOT)), name))
    return out


# ------------------------------------------------------------------------------ the committed docs
def test_results_md_is_the_json_rendered_now():
    path = ROOT / rm.RESULTS_MD
    assert path.is_file(), f"benchmarks/RESULTS.md is missing: {FIX}"
    assert path.read_text() == rm.render_results_md(rm.load_results(ROOT)), f"benchmarks/RESULTS.md is stale: {FIX}"


def test_readme_and_csdnet_doc_carry_their_blocks():
    blocks = _blocks()
    assert ("README.md", "readme") in blocks
    assert ("docs/csdnet.md", "csdnet") in blocks
    assert ("docs/datafree.md", "datafree") in blocks
    assert ("README.md", "datafree-comparison") in blocks
    assert ("docs/datafree.md", "datafree-benchmark") in blocks
    assert ("docs/datafree.md", "datafree-compression") in blocks
    assert ("docs/datafree.md", "datafree-lite0-10min") in blocks


@pytest.mark.parametrize("where,name", _blocks(), ids=lambda x: str(x))
def test_block_is_the_json_rendered_now(where, name):
    missing = rm.missing_sources(name, ROOT)
    if missing:
        pytest.skip(f"{', '.join(missing)} not committed yet, so the {name!r} block in {where} cannot be checked "
                    f"({', '.join(rm.WRITERS.get(Path(m).name.split('.')[0], '?') for m in missing)} writes it)")
    current = rm.block_body((ROOT / where).read_text(), name)
    assert current == rm.render_block(name, rm.load_results(ROOT)), f"{where}: block {name!r} is stale: {FIX}"


def _prose(text: str) -> str:
    """Text outside generated blocks, fenced code and inline code."""
    text = rm.MARKER.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_readme_shows_figures_only_in_generated_blocks():
    prose = _prose((ROOT / "README.md").read_text())
    prose = re.sub(r"Python \d+\.\d+", "", prose)  # a version is not a figure
    figures = re.findall(r"\b\d+(?:\.\d+)?\s?%|\b\d+\.\d{2}\b", prose)
    assert not figures, f"README.md shows figures outside a results block (put them in the JSON): {figures}"


def test_no_reference_to_a_file_outside_the_repository():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += [p for d in ("finegrain", "benchmarks", "tests") for p in sorted((ROOT / d).rglob("*.py"))]
    bad = [str(p.relative_to(ROOT)) for p in files
           if p.resolve() != Path(__file__).resolve() and re.search(r"METHODS\.md|/work/shared", p.read_text())]
    assert not bad, f"these cite a file outside the repository (cite docs/methods.md instead): {bad}"


FILE_SUFFIXES = {"json", "safetensors", "yaml", "md", "py", "png", "onnx", "pt", "csv", "html"}


def _reference_docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_stay_short():
    """README at most 200 lines, each reference page at most 400, docs/*.md (not history) at most 1,500."""
    lines = {p.name: len(p.read_text().splitlines()) for p in sorted((ROOT / "docs").glob("*.md"))}
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
    assert all(n <= 400 for n in lines.values()), lines
    assert sum(lines.values()) <= 1500, lines


def test_docs_name_only_shipped_recipes():
    shipped = {p.stem for p in (ROOT / "finegrain" / "configs").glob("*.yaml")}
    recipe = r"(?:datafree|oxford17|ufg|mnist|cub|cars|aircraft)_[a-z0-9_-]*[a-z0-9]"
    bad = set()
    for path in _reference_docs():
        text = path.read_text()
        names = re.findall(rf"--config ({recipe})\b", text) + re.findall(rf"`({recipe})`", text)
        bad |= {f"{path.relative_to(ROOT)}: {n}" for n in names if n not in shipped}
    assert not bad, f"the docs name recipes that do not ship in finegrain/configs/: {sorted(bad)}"


def test_docs_name_only_config_keys_that_exist():
    from finegrain import methods
    from finegrain.config import describe_sections

    methods.available()  # registers every method's section
    keys = {row[0] for row in describe_sections(None)}
    sections = {k.split(".")[0] for k in keys}
    bad = set()
    for path in _reference_docs():
        for span in re.findall(r"`([^`\n]+)`", _strip_blocks(path.read_text())):
            for section, key in re.findall(r"(?<![\w./<-])([a-z_]+)\.([a-z_]+)(?![\w./(-])", span):
                if section in sections and key not in FILE_SUFFIXES and f"{section}.{key}" not in keys:
                    bad.add(f"{path.relative_to(ROOT)}: {section}.{key}")
    assert not bad, f"the docs name config keys that `finegrain configs --keys` does not list: {sorted(bad)}"


def _strip_blocks(text: str) -> str:
    return rm.MARKER.sub("", text)


# ------------------------------------------------------------------------------ the renderer
RECIPES = {
    "command": "python -m benchmarks.recipes",
    "rows": [
        {"name": "supervised teacher", "recipe": "oxford17_cpu", "test_top1": 86.4706, "val_top1": 87.35,
         "seconds": 190.2, "teacher_test_top1": None,
         "command": "finegrain train --config oxford17_cpu --data ../shared/data/oxford17"},
        {"name": "DFKD-FGVC, 6-minute budget", "recipe": "datafree_practical", "test_top1": 55.0, "val_top1": 51.2,
         "seconds": 361.0, "teacher_test_top1": 86.4706, "scheduled_steps": 240, "steps": 240,
         "command": "finegrain distill --teacher runs/teacher --eval-data ../shared/data/oxford17 --budget 6"},
    ],
}
CSDNET = {
    "config": "finegrain/configs/oxford17_csdnet_cpu.yaml", "k": 5, "image_size": 96, "epochs": 10, "seeds": [0, 1],
    "datasets": {"oxford17": {"root": "../shared/data/oxford17"}}, "torch_threads": {"oxford17": 2},
    "runs": [{"dataset": "oxford17", "variant": "csdnet", "seed": 0, "seconds": 40.0}],
    "tables": {"oxford17": {
        "ce": {"test_top1_mean": 60.0, "test_top1_std": 1.0, "val_top1_mean": 58.0, "val_top1_std": 2.0, "runs": 2,
               "train_images_per_s": 40.0, "throughput_vs_ce": 1.0},
        "csdnet": {"test_top1_mean": 65.125, "test_top1_std": 0.5, "val_top1_mean": 63.0, "val_top1_std": 1.5,
                   "runs": 2, "train_images_per_s": 26.0, "throughput_vs_ce": 0.65}}},
}


def _repo(tmp_path: Path, recipes: bool = True) -> Path:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "docs" / "history").mkdir(parents=True)
    if recipes:
        (tmp_path / "benchmarks" / "recipes.result.json").write_text(json.dumps(RECIPES))
    (tmp_path / "benchmarks" / "csdnet_vs_ce.result.json").write_text(json.dumps(CSDNET))
    (tmp_path / "README.md").write_text("# x\n\n<!-- results:readme -->\nold 12.34\n<!-- /results:readme -->\n\nend\n")
    (tmp_path / "docs" / "csdnet.md").write_text("a\n<!-- results:csdnet -->\n<!-- /results:csdnet -->\nb\n")
    (tmp_path / "docs" / "history" / "old.md").write_text("<!-- results:nonsense -->\nkept 1.23\n")
    return tmp_path


def test_renderer_writes_every_figure_with_its_recipe_and_command(tmp_path):
    root = _repo(tmp_path)
    assert set(rm.check(root)) == {"README.md", "docs/csdnet.md", "benchmarks/RESULTS.md"}
    rm.write(root)
    assert rm.check(root) == []
    readme = (root / "README.md").read_text()
    assert readme.startswith("# x\n\n<!-- results:readme -->\n| run |")
    assert readme.endswith("<!-- /results:readme -->\n\nend\n")
    assert "old 12.34" not in readme
    rows = [line for line in readme.splitlines() if line.startswith("| ") and not line.startswith("| run")]
    assert len(rows) == 4  # two recipe rows, then CE and CSDNet
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1].startswith("`") and cells[-1].startswith("`"), line  # a recipe and a command
    assert "| supervised teacher | `oxford17_cpu` | 86.47 | – | 3.2 min |" in readme
    assert "| 55.00 | 86.47 | 6.0 min | `finegrain distill --teacher runs/teacher" in readme
    assert "65.12 ± 0.50" in readme and "`oxford17_csdnet_cpu method.name=supervised`" in readme
    csd = (root / "docs" / "csdnet.md").read_text()
    assert "| **CSDNet** | 65.12 ± 0.50 | 63.00 ± 1.50 | 2 | 26.0 | 0.65 |" in csd
    assert "`python -m benchmarks.csdnet_vs_ce --data ../shared/data/oxford17 --threads 2`" in csd
    results = (root / "benchmarks" / "RESULTS.md").read_text()
    assert "## `recipes.result.json`" in results and "## `csdnet_vs_ce.result.json`" in results
    assert "| DFKD-FGVC, 6-minute budget | `datafree_practical` | 55.00 | 51.20 | 86.47 | 6.0 min | 240 |" in results
    assert (root / "docs" / "history" / "old.md").read_text() == "<!-- results:nonsense -->\nkept 1.23\n"


def test_check_names_a_hand_edited_figure(tmp_path, capsys):
    root = _repo(tmp_path)
    rm.write(root)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("55.00", "56.00"))
    assert rm.check(root) == ["README.md"]
    assert rm.main(["--check", "--root", str(root)]) == 1
    assert "stale: README.md" in capsys.readouterr().out
    assert rm.main(["--root", str(root)]) == 0 and rm.main(["--check", "--root", str(root)]) == 0
    assert "55.00" in readme.read_text()


def test_a_missing_json_renders_a_placeholder_and_is_reported(tmp_path):
    root = _repo(tmp_path, recipes=False)
    rm.write(root)
    readme = (root / "README.md").read_text()
    assert "`benchmarks/recipes.result.json` is not committed yet: `python -m benchmarks.recipes` writes it" in readme
    assert "65.12 ± 0.50" in readme  # the CSDNet rows still render
    assert rm.missing_sources("readme", root) == ["benchmarks/recipes.result.json"]
    assert rm.missing_sources("csdnet", root) == []


def test_unknown_or_unclosed_markers_are_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown results block 'nope'"):
        rm.blocks_in("<!-- results:nope -->\n<!-- /results:nope -->\n", "x.md")
    with pytest.raises(ValueError, match="'readme' is not closed"):
        rm.blocks_in("<!-- results:readme -->\n", "x.md")


def _summary(variant, method, test, val, ablation=None):
    return {"variant": variant, "method": method, "recipe": "datafree_practical", "ablation": ablation, "runs": 3,
            "seeds": [0, 1, 2], "test_top1_mean": test, "test_top1_std": 1.0, "val_top1_mean": val,
            "val_top1_std": 2.0, "ratio_to_teacher_mean": test / 80.0, "steps_mean": 100.0, "seconds_mean": 360.0}


DATA_FREE = {
    "command": "python -m benchmarks.data_free", "data": "/somewhere/oxford17", "budget_minutes": 6.0,
    "seeds": [0, 1, 2], "jobs": 1, "threads": 2, "device": "cpu (recipes)", "complete": True,
    "teacher": {"architecture": "efficientnet_lite0", "test_top1": 80.0, "val_top1": 81.0},
    "rows": {"dfkd-fgvc": {"ablation": None}, "dfkd-fgvc-no-sam": {"ablation": "no-sam"}, "a": {"ablation": None},
             "b": {"ablation": None}, "c": {"ablation": None}, "d": {"ablation": None}, "kd": {"ablation": None}},
    "tuning": {"trials": 6, "seed": 0, "budget_minutes": 4.0, "jobs": 2, "threads": 1,
               "chosen": {"a": {"trial": 2, "trials": 6, "settings": [["optim.lr", 0.03]], "val_top1": 30.0},
                          "b": {"trial": 0, "trials": 6, "settings": [], "val_top1": 20.0}}},
    "summary": [_summary("dfkd-fgvc", "dfkd-fgvc", 10.0, 11.0), _summary("dfkd-fgvc-no-sam", "dfkd-fgvc", 60.0, 99.0,
                                                                         "no-sam"),
                _summary("a", "a", 40.0, 41.0), _summary("b", "b", 50.0, 42.0), _summary("c", "c", 55.0, 43.0),
                _summary("d", "d", 70.0, 12.0), _summary("kd", "kd", 85.0, 86.0)],
    "paired": [{"a": "a", "b": "dfkd-fgvc", "seeds": [0, 1, 2], "mean_difference": 30.0, "wins": 3, "losses": 0},
               {"a": "dfkd-fgvc", "b": "a", "seeds": [0, 1, 2], "mean_difference": -30.0, "wins": 0, "losses": 3},
               {"a": "b", "b": "dfkd-fgvc", "seeds": [0, 1, 2], "mean_difference": 5.0, "wins": 2, "losses": 1}],
}


def test_the_readme_shows_the_paper_the_best_three_by_val_and_kd(tmp_path):
    root = _repo(tmp_path)
    (root / "benchmarks" / "data_free.result.json").write_text(json.dumps(DATA_FREE))
    (root / "README.md").write_text("<!-- results:datafree-comparison -->\n<!-- /results:datafree-comparison -->\n")
    rm.write(root)
    rows = [line.split("|")[1].strip() for line in (root / "README.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| row")]
    # chosen by val, never by test: d has the best test and is left out; the ablation too
    assert rows == ["dfkd-fgvc", "c", "b", "a", "kd"]
    assert "| c | 55.00 ± 1.00 | 0.69 | 3 | 6.0 min |" in (root / "README.md").read_text()


def test_the_results_section_has_every_row_its_tuning_and_each_pair_once(tmp_path):
    section = rm.section("data_free", DATA_FREE)
    assert "Data `oxford17`; teacher efficientnet_lite0 (test 80.00, val 81.00)" in section
    assert "6 trials on val, seed 0, 4 minutes each" in section
    assert "| a | a | `datafree_practical` | 3 | 40.00 ± 1.00 | 41.00 ± 2.00 | 0.50 | 100 | 6.0 min | trial 2 of 6: " \
           "`optim.lr=0.03` |" in section
    assert "trial 0 of 6: `as shipped`" in section and "not tuned" in section
    assert "| a − dfkd-fgvc | 0 1 2 | +30.00 | 3 / 0 | 0.25 |" in section
    assert "dfkd-fgvc − a" not in section  # the reverse of a pair is not repeated
    assert "| b − dfkd-fgvc | 0 1 2 | +5.00 | 2 / 1 | 1.00 |" in section


def test_the_sign_test_is_two_sided_binomial():
    assert rm.sign_test(3, 0) == pytest.approx(0.25)
    assert rm.sign_test(10, 0) == pytest.approx(2 / 1024)
    assert rm.sign_test(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert rm.sign_test(0, 0) == 1.0


def test_a_budget_curve_renders_its_points_and_links_its_plot():
    data = {"command": "python -m benchmarks.data_free_budget", "device": "cpu (recipes)",
            "source": "benchmarks/data_free.result.json", "plot": "/x/benchmarks/data_free_budget.png",
            "curves": [{"variant": "kd", "budget_minutes": 2.0, "runs": 1, "test_top1_mean": 70.0, "test_top1_std": None,
                        "val_top1_mean": 71.0, "val_top1_std": None, "steps_mean": 40.0, "seconds_mean": 121.0}]}
    section = rm.section("data_free_budget", data)
    assert "Plot: [data_free_budget.png](data_free_budget.png)." in section
    assert "| kd | 2 | 1 | 70.00 | 71.00 | 40 | 2.0 min |" in section
