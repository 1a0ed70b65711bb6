"""tune.space without Ray: validation, conditional expansion (refused combinations skipped, with the
reason), seeded draws, PBT's keep-valid rule, and how train/evaluate/promote pick up the best config. The
sweep's console without a sweep: its table, the warning for a scheduler that never acts, no colour codes."""
from __future__ import annotations

import json
import os

import pytest

from components.config import ConfigError, load_params
from components.tuning import space
from components.evaluation import metric_and_mode
from pipelines import cli, tune
from pipelines.tune_trial import trial_params


def _params(*overrides):
    return load_params(None, ["tune.enabled=true", *overrides])


def test_space_keys_outside_model_and_train_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"data.source.*only seed, model.\*, train.\*, diffusion.\*"):
        _params("tune.space={data.source: {grid: [digits]}}")
    with pytest.raises(ConfigError, match=r"train.lr_gen.*train has no key 'lr_gen'"):
        _params("tune.space={train.lr_gen: {loguniform: [1.0e-4, 1.0e-3]}}")


@pytest.mark.parametrize("entry, message", [
    ("{grid: [1], choice: [2]}", "exactly one of grid, choice"),
    ("{uniform: [0.5, 0.1]}", "low < high"),
    ("{loguniform: [0.0, 0.1]}", "loguniform needs low > 0"),
])
def test_bad_space_entries_say_what_is_wrong(entry, message):
    with pytest.raises(ConfigError, match=message):
        _params(f"tune.space={{train.lr_g: {entry}}}")


def test_grid_search_needs_a_grid_entry_and_draws_the_others_per_point_equally():
    with pytest.raises(ConfigError, match="needs at least one grid entry"):
        _params("tune.search=grid", "tune.space={train.lr_g: {loguniform: [1.0e-4, 1.0e-3]}}")
    p = _params("tune.search=grid", "tune.space={train.objective: {grid: [nonsaturating, hinge]}, "
                "train.label_smoothing: {grid: [0.0, 0.1]}, train.lr_g: {loguniform: [1.0e-4, 1.0e-3]}, "
                "train.beta1: {choice: [0.0, 0.5]}}")
    out = space.expand(p, p.tune.space, "grid", 3, seed=0)
    points = [(c["train.objective"], c["train.label_smoothing"]) for c in out.configs]
    assert sorted(set(points)) == [("hinge", 0.0), ("nonsaturating", 0.0), ("nonsaturating", 0.1)]
    assert all(points.count(pt) == 3 for pt in set(points))  # the same number of draws for every setting
    lrs = [c["train.lr_g"] for c in out.configs]
    assert len(set(lrs)) == len(lrs) and all(1e-4 <= v <= 1e-3 for v in lrs)  # drawn anew for each
    assert {c["train.beta1"] for c in out.configs} == {0.0, 0.5}
    again = space.expand(p, p.tune.space, "grid", 3, seed=0)
    assert again.configs == out.configs  # the seed fixes the draws


def test_grid_skips_refused_combinations_and_says_why():
    p = _params("tune.search=grid", "tune.space={train.objective: {grid: [nonsaturating, hinge, lsgan]}, "
                "train.label_smoothing: {grid: [0.0, 0.1]}, train.d_steps_per_g_step: {grid: [1, 5]}}")
    out = space.expand(p, p.tune.space, "grid", 1, seed=0)
    assert len(out.configs) == 10 and out.skipped_total == 2  # hinge × smoothing 0.1 × both ratios
    assert all(not (c["train.objective"] == "hinge" and c["train.label_smoothing"]) for c in out.configs)
    [(reason, count)] = out.skipped.items()
    assert count == 2 and "label_smoothing = 0.1 cannot be used with objective = 'hinge'" in reason
    assert len({json.dumps(c, sort_keys=True) for c in out.configs}) == 10  # every accepted point once


def test_section_valued_entries_vary_keys_together():
    p = _params("tune.search=grid", "tune.space={train: {grid: [{objective: wasserstein, gradient_penalty: 10.0}, "
                "{objective: wasserstein}]}}")
    out = space.expand(p, p.tune.space, "grid", 1, seed=0)
    # WGAN without a Lipschitz constraint is refused; WGAN-GP is launched
    assert out.configs == [{"train": {"objective": "wasserstein", "gradient_penalty": 10.0}}] and out.skipped_total == 1
    assert space.flatten(space.encode(out.configs[0])) == {"train.objective": "wasserstein",
                                                           "train.gradient_penalty": 10.0}


def test_random_draws_are_seeded_valid_and_in_range():
    p = _params("tune.space={train.objective: {choice: [hinge, lsgan]}, train.label_smoothing: {choice: [0.0, 0.2]}, "
                "train.lr_g: {loguniform: [1.0e-5, 1.0e-2]}}")
    a = space.expand(p, p.tune.space, "random", 40, seed=3)
    b = space.expand(p, p.tune.space, "random", 40, seed=3)
    assert a.configs == b.configs and len(a.configs) == 40
    assert a.skipped_total > 0  # hinge drew smoothing 0.2 about a quarter of the time and was redrawn
    assert all(1e-5 <= c["train.lr_g"] <= 1e-2 for c in a.configs)
    assert all(c["train.label_smoothing"] == 0.0 for c in a.configs if c["train.objective"] == "hinge")


def test_pbt_explore_keeps_configurations_valid():
    p = _params()
    fixed = space.make_valid(p, {"train.objective": "hinge", "train.label_smoothing": 0.1, "train.lr_g": 0.01},
                             {"train.label_smoothing": 0.0, "train.lr_g": 2e-4})
    assert fixed == {"train.objective": "hinge", "train.label_smoothing": 0.0, "train.lr_g": 0.01}


def test_trial_params_run_the_sweep_budget_and_cadence():
    p = _params("tune.trial_steps=300", "tune.eval_every=100", "tune.num_workers=1",
                "tune.space={train.lr_g: {choice: [0.001]}}")
    t = trial_params(p, {"train.lr_g": 0.001, "train": '{"objective": "lsgan"}'})
    assert (t.train.lr_g, t.train.objective, t.train.max_steps, t.train.checkpoint_every, t.scaling.num_workers) == \
        (0.001, "lsgan", 300, 100, 1)


def test_metric_must_fit_the_data_kind():
    with pytest.raises(ConfigError, match="'reverse_kl' is not reported for model.family = 'dcgan' on image data"):
        metric_and_mode(_params("tune.metric=reverse_kl"), "image")
    assert metric_and_mode(_params(), "points") == ("reverse_kl", "min")
    assert metric_and_mode(_params("tune.metric=coverage"), "image") == ("coverage", "max")


def test_train_uses_the_tuned_configuration_unless_the_sweep_is_off(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("tune: {enabled: true}\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--no-ray"]) == 1  # no best.json yet: a clear error, nothing trained
    (tmp_path / "data" / "tune").mkdir(parents=True)
    (tmp_path / "data" / "tune" / tune.BEST_FILE).write_text(json.dumps(
        {"enabled": True, "overrides": {"train.objective": "lsgan", "train.lr_d": 0.001}}))
    path = tmp_path / "params.yaml"
    trained = cli.stage_params("train", path, ["train.lr_d=0.002"], tmp_path)  # --set still wins
    assert (trained.train.objective, trained.train.lr_d) == ("lsgan", 0.002)
    assert cli.stage_params("evaluate", path, [], tmp_path).train.objective == "lsgan"
    assert cli.stage_params("tune", path, [], tmp_path).train.objective == "nonsaturating"  # the sweep's base
    assert cli.stage_params("train", path, ["tune.enabled=false"], tmp_path).train.objective == "nonsaturating"


def test_a_gpu_share_needs_in_process_trials_and_each_trial_reserves_its_worker():
    from pipelines.tune_trial import trial_resources

    shared = _params("scaling.use_gpu=true", "tune.gpus_per_trial=0.25", "scaling.resources_per_worker={trainer: 1}")
    assert trial_resources(shared) == {"cpu": 1, "gpu": 0.25, "trainer": 1}  # four trials per GPU
    assert trial_resources(_params("tune.gpus_per_trial=0.25")) == {"cpu": 1, "gpu": 0}  # no GPU asked for
    # a Train run per trial: the trial only waits, its workers hold the resources
    assert trial_resources(_params("tune.num_workers=2")) == trial_resources(_params("tune.in_process=false")) \
        == {"cpu": 0, "memory": 1}
    for refused in ("tune.num_workers=2", "tune.in_process=false"):
        with pytest.raises(ConfigError, match=r"gpus_per_trial = 0.25 shares a GPU .* only in-process trials"):
            _params("tune.gpus_per_trial=0.25", refused)
    with pytest.raises(ConfigError, match="gpus_per_trial"):
        _params("tune.gpus_per_trial=1.5")



def test_error_seeds_average_the_scores_of_several_sampling_seeds(tmp_path):
    """QuickScorer.over_seeds: the mean and sample std of the scores at evaluate.seed, +1, …; the first
    seed's scores are the in-training ones."""
    import statistics

    import torch

    from components.evaluation import QuickScorer
    from components.families import FAMILIES
    from pipelines import evaluator, prepare

    raw = {"data": {"source": "digits", "prepared_dir": str(tmp_path / "prepared")},
           "model": {"latent_dim": 16, "g_channels": 16, "d_channels": 16},
           "evaluator": {"epochs": 1, "output_dir": str(tmp_path / "evaluator")}}
    (tmp_path / "p.yaml").write_text(json.dumps(raw))
    params = load_params(tmp_path / "p.yaml", ["preset=null"])
    prepare.run(params, tmp_path)
    evaluator.run(params, tmp_path)
    torch.manual_seed(0)
    g = FAMILIES.get("dcgan").networks(params.model, (1, 8, 8), (1, 8, 8), 0)[0].eval()
    scorer = QuickScorer(params, tmp_path, 500)
    per_seed = [scorer(g, params.with_overrides({"evaluate.seed": k}, source="test")) for k in range(3)]
    got = scorer.over_seeds(g, params, 3)
    assert per_seed[0] == scorer(g) and per_seed[0] != per_seed[1]  # seeds draw different samples
    for key in ("fid", "kid_mean"):
        values = [m[key] for m in per_seed]
        assert got[key] == pytest.approx(statistics.mean(values))
        assert got[key + "_seed_std"] == pytest.approx(statistics.stdev(values)) and got[key + "_seed_std"] > 0


# --- the sweep's console: Ray Tune's progress table, the warning for a scheduler that never acts, no colour

def _trial(trial_id, status, config, **result):
    from types import SimpleNamespace

    return SimpleNamespace(trial_id=trial_id, status=status, config=config, last_result=result)


def _sweep():
    return [_trial("a_00000", "TERMINATED", {"train": '{"objective": "hinge"}', "train.lr_g": 0.000154374},
                   step=30, fid=1167.243, d_loss=0.4, g_loss=1.6, d_real=1.8, d_fake=-1.2),
            _trial("a_00001", "RUNNING", {"train": '{"objective": "wasserstein", "gradient_penalty": 10.0}',
                                          "train.lr_g": 0.00037}, step=60, fid=1042.4),
            _trial("a_00002", "ERROR", {"train": '{"objective": "lsgan"}', "train.lr_g": 0.0002}, step=30,
                   fid=float("nan")),
            _trial("a_00003", "PENDING", {"train": '{"objective": "nonsaturating"}', "train.lr_g": 0.0001})]


def test_the_sweep_table_shows_the_tuned_metric_and_uncut_tuned_values():
    from components.tuning.console import table

    text = table(_sweep(), "fid", "min", trial_steps=60, elapsed_s=75.2, total=6)
    lines = text.splitlines()
    assert lines[0] == "tune: 6 trials: 1 running, 3 pending, 1 stopped, 1 failed | 1:15 | best fid 1042 (a_00001)"
    assert lines[1].split() == ["trial", "status", "step", "fid", "objective", "lr_g", "gradient_penalty"]
    assert [line.split() for line in lines[2:]] == [
        ["a_00000", "stopped", "30", "1167", "hinge", "0.000154", "-"],  # stopped before trial_steps: ASHA
        ["a_00001", "running", "60", "1042", "wasserstein", "0.00037", "10"],
        ["a_00002", "failed", "30", "-", "lsgan", "0.0002", "-"],
        ["a_00003", "pending", "-", "-", "nonsaturating", "0.0001", "-"]]
    assert "d_loss" not in text and "..." not in text and text.isascii() and "\x1b" not in text


def test_a_large_sweep_shows_its_running_trials_then_the_best():
    from components.tuning.console import table

    lines = table(_sweep(), "fid", "max", trial_steps=30, elapsed_s=5, max_rows=2).splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["a_00001", "a_00000", "..."]  # mode max: 1167 first
    assert lines[-1] == "  ... 2 more trials (all of them: the trials CSV, at the end)"
    assert lines[0].endswith("| 0:05 | best fid 1167 (a_00000)")


def test_the_sweep_table_is_printed_on_changes_at_most_every_five_seconds_and_once_at_the_end(monkeypatch):
    import io

    from components.tuning import console

    now = [1000.0]
    monkeypatch.setattr(console.time, "time", lambda: now[0])
    out = io.StringIO()
    reporter = console.SweepConsole(60, "fid", "min", out=out)
    reporter.setup(start_time=1000.0, total_samples=4)
    trials = _sweep()
    shown = []
    for dt, done in [(0, False), (1, False), (3, False), (2, False), (29, False), (1, False), (0, True)]:
        now[0] += dt
        if dt == 3:
            trials[3].status = "RUNNING"  # a change 4 s after the last table: waits…
        if reporter.should_report(trials, done):
            reporter.report(trials, done)
            shown.append(now[0] - 1000)
    assert shown == [0, 6, 36]  # first, the change once 5 s passed, 30 s later; the end repeats nothing
    assert out.getvalue().count("tune: 4 trials") == 3
    trials[0].status = "PENDING"  # a change seen only at the end is printed
    assert reporter.should_report(trials, done=True)


@pytest.mark.parametrize("overrides, idle", [
    (["tune.trial_steps=150", "tune.eval_every=50"],  # the reported case: grace 500, 150-step trials
     "tune.asha.grace_period = 500 comes after a trial's last evaluation before its end (step 100: "
     "tune.trial_steps = 150, tune.eval_every = 50): ASHA stops no trial, and the sweep runs every trial to its "
     "end as FIFO would. Set tune.asha.grace_period at most 100, or tune.scheduler: fifo"),
    (["tune.trial_steps=150", "tune.eval_every=150", "tune.asha.grace_period=50"],
     "tune.eval_every = 150 leaves a trial no evaluation before its end at tune.trial_steps = 150: ASHA stops"),
    (["tune.scheduler=pbt", "tune.trial_steps=400", "tune.eval_every=100"],
     "tune.pbt.perturbation_interval = 500 comes after a trial's last evaluation before its end (step 300: "),
    (["tune.trial_steps=150", "tune.eval_every=50", "tune.asha.grace_period=100"], None),
    (["tune.scheduler=pbt", "tune.trial_steps=600", "tune.eval_every=100"], None),
    (["tune.scheduler=fifo", "tune.trial_steps=150", "tune.eval_every=50"], None),
    ([], None),  # as shipped: grace 500 of 1,500 steps
])
def test_a_scheduler_that_would_never_act_is_warned_about(overrides, idle):
    found = _params(*overrides).tune.idle_scheduler()
    assert found == idle if idle is None or idle.endswith("fifo") else found.startswith(idle)


def test_the_warning_comes_before_the_sweep_starts_and_in_the_dry_run(tmp_path, capsys):
    from components.data.source_data import DataError

    params = _params("tune.trial_steps=150", "tune.eval_every=50")
    plan = tune.dry_run(params, tmp_path)
    assert f"warning: {params.tune.idle_scheduler()}" in plan["notes"]
    with pytest.raises(DataError, match="no prepared dataset"):  # the stage stops right after the warning
        tune.run(params, tmp_path)
    assert capsys.readouterr().out.startswith("tune: warning: tune.asha.grace_period = 500 comes after")


def test_ray_prints_every_trials_line_without_colour_under_the_cli(tmp_path):
    """RAY_DEDUP_LOGS is read when Ray is imported, so the CLI sets it (and RAY_COLOR_PREFIX) before any stage
    imports Ray: in a fresh process, two trials' progress lines through Ray's driver log printer all arrive, in
    plain text; an explicit setting still wins."""
    import subprocess
    import sys

    from conftest import REPO

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\nfrom pipelines import cli\n"
        "assert cli.main(['prepare', '--params', 'missing.yaml']) == 2\n"
        "from ray._private import worker\nfrom ray._private.ray_logging import stdout_deduplicator\n"
        "for pid, line in [(11, 'trial a_00000: 41% 25/60 steps [0:03]'),"
        " (12, 'trial a_00001: 41% 25/60 steps [0:03]'), (11, 'trial a_00000: 83% 50/60 steps [0:06]'),"
        " ('raylet', 'a raylet warning')]:\n"
        "    worker.print_to_stdstream({'ip': 'h', 'localhost': 'h', 'pid': pid, 'lines': [line], 'is_err': False},"
        " ignore_prefix=False)\n"
        "for batch in stdout_deduplicator.flush():\n    worker.print_worker_logs(batch, sys.stdout)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_DEDUP_LOGS", "RAY_COLOR_PREFIX")}
    run = lambda **extra: subprocess.run([sys.executable, str(probe)], cwd=tmp_path, capture_output=True,  # noqa: E731
                                         text=True, timeout=120, env={**env, "PYTHONPATH": str(REPO), **extra}).stdout
    assert run().splitlines() == ["(pid=11) trial a_00000: 41% 25/60 steps [0:03]",
                                  "(pid=12) trial a_00001: 41% 25/60 steps [0:03]",
                                  "(pid=11) trial a_00000: 83% 50/60 steps [0:06]", "(raylet) a raylet warning"]
    ray_default = run(RAY_DEDUP_LOGS="1", RAY_COLOR_PREFIX="1")
    assert "\x1b[" in ray_default and "repeated 2x across cluster" in ray_default
