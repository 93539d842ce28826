"""benchmarks/tuning.py and data_free.py's equal tuning: one declared space, the same number of val
trials for every method, the choice on val, the final runs with the chosen settings (no training)."""

from __future__ import annotations

import json

from benchmarks import data_free as bench
from benchmarks import harness, tuning
from conftest import make_imagefolder
from test_harness import fake_summary

SPACE = (
    tuning.Dimension("lr", (0.5, 1.0, 2.0), {"*": "generator.lr"}, relative=True),
    tuning.Dimension("k", (1, 4), {"*": "distill.student_steps", "noise-kd": None}),
    tuning.Dimension("prior", ((False, 0.0), (True, 10.0)), {"dfad": ("generator.class_conditional", "generator.target_ce")}),
)


def practical():
    return harness.load_recipe("datafree_practical")   # generator.lr 0.002, k 4, conditional with prior 10


def test_trial_zero_is_the_recipe_and_the_others_are_distinct_points_of_the_space():
    cfg = practical()
    trials = tuning.trials(SPACE, "dfad", cfg, 6)
    assert trials[0] == () and len(trials) == 6 and len(set(trials)) == 6
    own = (("generator.lr", 0.002), ("distill.student_steps", 4), ("generator.class_conditional", True),
           ("generator.target_ce", 10.0))
    assert own not in trials
    assert {value for t in trials[1:] for key, value in t if key == "generator.lr"} <= {0.001, 0.002, 0.004}
    assert tuning.trials(SPACE, "dfad", cfg, 6) == trials                    # a rerun draws the same
    assert tuning.trials(SPACE, "dfq", cfg, 6) != trials and all(len(t) == 2 for t in tuning.trials(SPACE, "dfq", cfg, 6)[1:])


def test_a_small_space_gives_every_point_it_has_and_a_method_without_a_dimension_lacks_it():
    trials = tuning.trials(SPACE, "noise-kd", practical(), 6)
    assert trials == [()] + [t for t in trials[1:]] and len(trials) == 3      # lr x0.5 and x2 only
    assert all(key == "generator.lr" for t in trials[1:] for key, _ in t)


def test_the_choice_is_on_val_and_the_earlier_trial_wins_a_tie():
    rows = [{"trial": 0, "val_top1": 50.0, "test_top1": 99.0}, {"trial": 1, "val_top1": 60.0, "test_top1": 1.0},
            {"trial": 2, "val_top1": 60.0}, {"trial": 3, "val_top1": None}]
    assert tuning.choose(rows)["trial"] == 1
    assert tuning.choose([]) is None


def test_every_tuned_row_binds_every_trial_and_gets_the_same_number():
    table = bench.rows()
    tuned = bench.tuned_rows(table, list(table))
    assert "dfkd-fgvc-practical" in tuned and "dfad" in tuned and "noise-kd" in tuned
    assert not {"dfkd-fgvc", "dfkd-fgvc-no-sam", "kd"} & set(tuned)       # the paper's settings; the reference
    args = bench.parse_args(["--stage", "tune"])
    runs = bench.tuning_plan(args, table, "/t", "/o")
    counts = {name: sum(r.name == name for r in runs) for name in tuned}
    assert set(counts.values()) == {bench.TUNING["trials"]}
    assert [r.labels for r in runs[:len(tuned)]] == [(("stage", "tune"), ("trial", 0))] * len(tuned)   # trial-major
    for run in runs:
        cfg = run.check()
        for key, value in run.settings:
            assert tuning.config_value(cfg, key) == value, (run.run_id, key)
        assert run.budget_minutes == bench.TUNING["budget_minutes"] and run.seed == bench.TUNING["seed"]


def by_trial_runner(best: int):
    """Trains nothing: val top-1 is 30 + the trial's index, except trial ``best`` at 90."""
    def run(task):
        run = harness.Run.from_dict(task["run"])
        trial = dict(run.labels).get("trial")
        val = 30.0 if trial is None else (90.0 if trial == best else 30.0 + trial)
        run.run_dir.mkdir(parents=True, exist_ok=True)
        summary = {**fake_summary(test=val + 1, val=val), "run_dir": str(run.run_dir)}
        (run.run_dir / "summary.json").write_text(json.dumps(summary))
        (run.run_dir / "model.safetensors").write_bytes(run.run_id.encode())
        return {"seconds": 240.0, "run_dir": str(run.run_dir)}
    return run


def test_the_final_runs_use_the_trial_chosen_on_val(tmp_path):
    data = make_imagefolder(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    out = tmp_path / "df.json"
    common = ["--data", str(data), "--rows", "dfad", "dfkd-fgvc", "--seeds", "0", "1",
              "--workdir", str(tmp_path / "w"), "--out", str(out)]
    partial = bench.main(common + ["--stage", "tune"], runner=by_trial_runner(best=2))
    assert partial["chosen"]["dfad"]["trial"] == 2 and not out.exists() and harness.partial_path(out).exists()
    result = bench.main(common, runner=by_trial_runner(best=2))
    chosen = result["tuning"]["chosen"]["dfad"]
    trial_two = next(r for r in result["tuning_runs"] if r["variant"] == "dfad" and r["trial"] == 2)
    assert chosen["settings"] == trial_two["spec"]["settings"] != [] and chosen["trials"] == bench.TUNING["trials"]
    finals = {(r["variant"], r["seed"]): r for r in result["runs"]}
    assert set(finals) == {("dfad", 0), ("dfad", 1), ("dfkd-fgvc", 0), ("dfkd-fgvc", 1)}
    assert finals[("dfad", 1)]["spec"]["settings"] == chosen["settings"] and finals[("dfad", 0)]["tuning_trials"] == 6
    assert finals[("dfkd-fgvc", 0)]["spec"]["settings"] == [] and finals[("dfkd-fgvc", 0)]["tuning_trials"] == 0
    assert len(result["sittings"]) == 2 and result["complete"]
    assert [d["name"] for d in result["tuning"]["space"]] == [d.name for d in bench.SEARCH_SPACE]


def test_another_dataset_can_run_the_choices_tuned_here(tmp_path):
    data = make_imagefolder(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    common = ["--data", str(data), "--rows", "dfad", "--seeds", "0", "--workdir", str(tmp_path / "w")]
    source = bench.main(common + ["--out", str(tmp_path / "a.json")], runner=by_trial_runner(best=3))
    calls = []

    def counting(task):
        calls.append(task["run"]["name"])
        return by_trial_runner(best=3)(task)

    other = bench.main(common + ["--out", str(tmp_path / "b.json"), "--tuned-from", str(tmp_path / "a.json"),
                                 "--fresh"], runner=counting)
    assert other["tuning_runs"] == [] and other["tuning"]["tuned_from"] == str(tmp_path / "a.json")
    assert other["runs"][0]["spec"]["settings"] == source["tuning"]["chosen"]["dfad"]["settings"]
    assert calls == ["teacher", "dfad"]                                    # no trial: the teacher (--fresh), the final run
    import pytest

    with pytest.raises(SystemExit, match="no tuning choice for dfkd-fgvc-practical"):
        bench.main(common[:3] + ["dfkd-fgvc-practical"] + common[4:] + ["--tuned-from", str(tmp_path / "a.json"),
                                                                         "--out", str(tmp_path / "c.json")],
                   runner=by_trial_runner(best=3))
