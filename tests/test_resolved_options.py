"""Resolved options (components/options.py): what `genpipe <stage> --dry-run` prints (the options with each
layer's provenance, then what the stage would read, write and reuse), that it writes nothing, and that the
options file a stage writes (and train logs to its MLflow run) is what the dry run printed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components import options
from components.config import load_params
from conftest import REPO
from pipelines import cli


def _params_file(root: Path, prepared_dir: Path | str = "data/prepared") -> Path:
    """Tiny params (digits, a few steps) under the default preset cgan, with a private MLflow store."""
    raw = {"seed": 0, "preset": "cgan",
           "data": {"source": "digits", "row_group_rows": 64, "prepared_dir": str(prepared_dir)},
           "model": {"latent_dim": 16, "g_channels": 16, "d_channels": 16},
           "train": {"epochs": 1, "max_steps": 4, "batch_size": 32, "log_every": 2, "checkpoint_every": 2},
           "scaling": {"num_workers": 1}, "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}"}}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _listing(*roots: Path) -> list[str]:
    return sorted(str(p) for root in roots for p in root.rglob("*"))


def _dry_run(argv: list[str], capsys) -> tuple[str, dict, dict]:
    """(the options as printed, the options, the plan) of `genpipe <argv> --dry-run`."""
    capsys.readouterr()  # what came before
    assert cli.main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    printed = out.split("---\n")[0]
    resolved, plan = yaml.safe_load_all(out)
    return printed, resolved, plan


def test_train_dry_run_prints_every_layer_and_the_run_it_would_start_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                                                       digits_root):
    _params_file(tmp_path, digits_root / "prepared")
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path, digits_root)
    _, resolved, plan = _dry_run(["train", "--no-ray", "--set", "train.lr_g=0.001"], capsys)
    assert _listing(tmp_path, digits_root) == before  # no data/, mlflow/, checkpoints, MLflow store

    assert resolved["stage"] == "train" and set(resolved["code"]) in ({"commit", "dirty"}, {"version"})
    assert resolved["layers"] == {"params_file": "params.yaml", "preset": "cgan", "set": ["train.lr_g=0.001"],
                                  "tuned": {}}
    p = resolved["params"]
    assert p["train"]["lr_g"] == 0.001 and resolved["set_by"]["train.lr_g"] == "--set"
    # the preset's values, said to come from it; the file's own, from the file
    assert (p["model"]["conditioning"], p["train"]["diffusion_d"]) == ("projection", True)
    assert resolved["set_by"]["model.conditioning"] == resolved["set_by"]["train.diffusion_d"] == "preset cgan"
    assert resolved["set_by"]["train.max_steps"] == "params.yaml" and p["train"]["max_steps"] == 4
    assert "train.lr_d" not in resolved["set_by"]  # at its code default, set by no layer
    assert list(p) == sorted(p)  # a fixed key order

    content = json.loads((digits_root / "prepared/digits/manifest.json").read_text())["content_hash"][:12]
    assert any(content in line for line in plan["reads"])
    (started,) = [n for n in plan["notes"] if n.startswith("starts run dcgan-digits-")]
    assert "-noray from step 0 of 4" in started
    assert plan["options_file"].startswith("data/train/options.yaml")
    assert not plan["reuses"]

    # a whole checkpoint of this run: resumed at its step
    from components.training import checkpoint as ckpt

    run_name = started.split()[2]
    folder = tmp_path / "data/checkpoints" / run_name / "checkpoint_000000002"
    folder.mkdir(parents=True)
    ckpt.save({"step": 2, "epoch": 0}, folder)
    _, _, plan = _dry_run(["train", "--no-ray", "--set", "train.lr_g=0.001"], capsys)
    assert plan["reuses"] == [f"data/checkpoints/{run_name}/checkpoint_000000002: resumes run {run_name} at step 2 of 4"]


@pytest.mark.filterwarnings("ignore::components.config.loading.PresetShadowsFile")  # modes: its preset wins
@pytest.mark.parametrize("argv", [["prepare"], ["evaluator"], ["tune"], ["train"], ["evaluate"], ["promote"],
                                  ["sample", "--model", "models:/digits-dcgan@champion"],
                                  ["modes", "--dataset", "ring8"]])
def test_every_stage_has_a_dry_run_that_writes_nothing(tmp_path, monkeypatch, capsys, argv):
    assert set(cli.STAGES) >= {argv[0]}
    _params_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path)
    _, resolved, plan = _dry_run(argv, capsys)
    assert _listing(tmp_path) == before
    assert resolved["stage"] == argv[0] and plan["writes"] and set(plan) == {"options_file", "reads", "writes",
                                                                              "reuses", "notes"}


def test_the_prepare_stage_writes_the_options_its_dry_run_prints(tmp_path, monkeypatch, capsys):
    _params_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["prepare", "--set", "data.test_fraction=0.2"]
    printed, resolved, plan = _dry_run(argv, capsys)
    assert plan["options_file"] == "data/prepared/digits/options.yaml"
    assert cli.main(argv) == 0
    written = (tmp_path / "data/prepared/digits/options.yaml").read_text()
    assert written == printed
    # data/prepared feeds every later stage's hash: only prepare's DVC params, no code version
    assert "code" not in resolved and set(resolved["params"]) == {"seed", "preset", "data"}
    assert resolved["params"]["data"]["test_fraction"] == 0.2 and resolved["set_by"]["data.test_fraction"] == "--set"
    # the file's keys off their code default (data.prepared_dir is at it), --set's whatever its value
    assert resolved["set_by"] == {"data.row_group_rows": "params.yaml", "data.source": "params.yaml",
                                  "data.test_fraction": "--set", "preset": "params.yaml"}


def test_train_logs_its_options_on_its_run_and_a_rebuild_keeps_what_the_run_trained_with(run_root, monkeypatch,
                                                                                         capsys):
    from mlflow.tracking import MlflowClient

    _params_file(run_root, run_root / "prepared")
    monkeypatch.chdir(run_root)
    printed, _, _ = _dry_run(["train", "--no-ray"], capsys)
    assert cli.main(["train", "--no-ray"]) == 0
    written = (run_root / "data/train/options.yaml").read_text()
    assert written == printed  # the code version included: same checkout, same process
    summary = json.loads((run_root / "data/train/train_summary.json").read_text())
    client = MlflowClient(summary["tracking_uri"])
    logged = Path(client.download_artifacts(summary["mlflow_run_id"], "options.yaml", str(run_root))).read_text()
    assert logged == written

    # a bookkeeping key: the same (finished) run, rebuilt; its options stay those it trained with
    _, again, plan = _dry_run(["train", "--no-ray", "--set", "train.log_every=1"], capsys)
    assert again["set_by"]["train.log_every"] == "--set" and any("nothing is trained" in r for r in plan["reuses"])
    assert cli.main(["train", "--no-ray", "--set", "train.log_every=1"]) == 0
    assert (run_root / "data/train/options.yaml").read_text() == written


def test_set_by_names_the_layer_that_won_each_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("preset: cgan\ntrain: {epochs: 2, lr_d: 0.0003}\n")
    tuned, overrides = {"train.objective": "lsgan", "train.lr_d": 0.001}, ["train.lr_d=0.002"]
    params = load_params(path, [f"{k}={json.dumps(v)}" for k, v in tuned.items()] + overrides)
    resolved = options.resolve("train", params, options.Layers(str(path), tuple(overrides), tuned))
    assert resolved["set_by"] == {"preset": str(path), "train.epochs": str(path), "model.conditioning": "preset cgan",
                                  "train.diffusion_d": "preset cgan", "train.objective": options.TUNED_FROM,
                                  "train.lr_d": "--set"}
    assert resolved["params"]["train"]["lr_d"] == 0.002 and resolved["layers"]["tuned"] == tuned
    # a stage given only some sections shows only those, and their provenance
    evaluate = options.resolve("evaluate", params, options.Layers(str(path), tuple(overrides), tuned))
    assert set(evaluate["params"]) == {"preset", "tune", "diffusion", "ddgan", "translation", "seqgan", "relgan",
                                       "evaluate"}
    assert evaluate["params"]["tune"] == {"enabled": False} and evaluate["set_by"] == {"preset": str(path)}


def test_the_sections_a_stage_records_are_its_dvc_params():
    """So an options file inside a DVC output changes only when DVC reruns the stage anyway."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        sections = options.stage_sections(name)
        assert sections is None or set(sections) == set(stage["params"]), name
    assert options.stage_sections("train") is None  # train records everything it ran with
    # the outputs other stages hash carry no code version; the options files are inside the stage's outputs
    assert not {"prepare", "evaluator", "tune"} & options.WITH_CODE
    params = load_params(REPO / "params.yaml")
    for name in stages:
        where = options.options_path(name, params, REPO).relative_to(REPO)
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages[name].get("outs", [])]
        assert any(str(where) == out or str(where).startswith(out + "/") for out in outs), (name, where)
