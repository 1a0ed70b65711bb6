"""`dvc exp run -S` rewrites params.yaml through DVC's own code (dvc.utils.hydra.apply_overrides: a ruamel
round trip). params.yaml is kept in the form that round trip writes, so an experiment's diff is the edited lines."""
import difflib
import shutil
from pathlib import Path

import pytest
from dvc.utils.hydra import apply_overrides

REPO = Path(__file__).resolve().parents[1]


def _changed(tmp_path: Path, overrides: list[str]) -> list[str]:
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    apply_overrides(path, overrides)  # what `dvc exp run -S` (queue/base.py _update_params) calls
    before, after = (REPO / "params.yaml").read_text().splitlines(), path.read_text().splitlines()
    return [line for line in difflib.unified_diff(before, after, lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_params_file_is_what_dvc_writes(tmp_path):
    assert _changed(tmp_path, ["seed=0"]) == []  # a no-op -S leaves every byte: nulls, lists, comments


@pytest.mark.parametrize("override, line", [
    ("train.epochs=2", "  epochs: 2 "),
    ("data.path=photos", "  path: photos "),
    ("tune.asha.grace_period=100", "  asha: {grace_period: 100, reduction_factor: 2}"),
])
def test_set_param_changes_only_its_line(tmp_path, override, line):
    removed, added = _changed(tmp_path, [override])
    assert removed.startswith("-") and added.startswith("+" + line)
    # the end-of-line comment stays, at its column
    assert removed.index("#") == added.index("#") and removed.split("#", 1)[1] == added.split("#", 1)[1]


def test_values_genpipe_init_writes_are_in_the_same_form(tmp_path):
    """components/config/edit.py (genpipe init) writes nulls and lists as DVC does: a later `-S` changes nothing else."""
    from components.config.edit import set_values

    path = tmp_path / "params.yaml"
    path.write_text(set_values((REPO / "params.yaml").read_text(), {
        "data.image_size": None, "data.name": "faces", "seqgan.d_filters": [32, 32, 32, 32, 32, 32, 32, 32, 32],
        "tune.space": {"train.lr_g": {"loguniform": [0.001, 0.03]}}}))
    written = path.read_text()
    apply_overrides(path, ["seed=0"])
    assert path.read_text() == written


def _stage_params(stage: str) -> set[str]:
    import yaml

    return {p for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["params"] if isinstance(p, str)}


# What the tune stage does not read of `train`: a trial runs tune.trial_steps (not epochs/max_steps), keeps its
# own checkpoints, exports nothing and draws no per-epoch grid (trials have no logger).
TUNE_SKIPS_TRAIN = {"epochs", "max_steps", "checkpoint_every", "keep_checkpoints", "run_name", "output_dir",
                    "curves_dir", "sample_every"}
# What only train and tune read of `data`: how workers hold and fetch their share.
LOADER_KEYS = {"stream", "memory_budget_mb", "stream_window_rows", "remote"}


def test_tune_depends_on_every_train_key_it_reads_and_no_other():
    """An epochs change reruns train, not the sweep; a new train key cannot be left out of tune's deps."""
    from components.config.sections import TrainConfig

    listed = {p.split(".", 1)[1] for p in _stage_params("tune") if p.startswith("train.")}
    assert listed & TUNE_SKIPS_TRAIN == set()
    assert listed | TUNE_SKIPS_TRAIN == set(TrainConfig.model_fields)


def test_prepare_depends_on_the_data_keys_it_reads_and_the_loaders_on_theirs():
    from components.config.sections import DataConfig

    prepare = {p.split(".", 1)[1] for p in _stage_params("prepare") if p.startswith("data.")}
    assert prepare | LOADER_KEYS == set(DataConfig.model_fields) and prepare & LOADER_KEYS == set()
    for stage in ("tune", "train"):
        assert {f"data.{k}" for k in LOADER_KEYS} <= _stage_params(stage), stage


def test_the_readmes_exp_show_fits_160_columns(tmp_path):
    """The README's `dvc exp show` command: at most 20 columns, no cell cut to "…" at 160 characters, and a
    param that differs from the last commit shown."""
    import os
    import re
    import subprocess
    import sys

    command = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("dvc exp show"))
    env = {**os.environ, "COLUMNS": "160", "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    params = clone / "params.yaml"
    params.write_text(re.sub(r"(?m)^  lr_g: 0\.0002", "  lr_g: 0.0004", params.read_text()))
    out = subprocess.run(command, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "Experiment" in line).split()
    assert "…" not in out.stdout and len(header) <= 20, out.stdout
    assert {"fid", "preset", "train.epochs", "train.lr_g"} <= set(header)
    assert any("0.0004" in line for line in out.stdout.splitlines() if "workspace" in line)
