"""`genpipe init`: params.yaml pointed at the user's data with only the keys it sets changed, and the user's files
as a DVC dependency of prepare (a file deleted, added or edited reruns it)."""
from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from components.config import load_params
from components.config.edit import EditError, set_values
from conftest import REPO, copy_project
from pipelines import cli

SHIPPED = (REPO / "params.yaml").read_text()


def _changed(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def _images(root: Path, classes: int = 2, per_class: int = 12, side: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(root / f"c{c}" / f"{i:02d}.png")
    return root


def test_set_values_changes_only_the_keys_it_sets():
    after = set_values(SHIPPED, {"train.epochs": 3, "data.path": "my data/x", "tune.space": {"train.lr_g": {
        "loguniform": [0.001, 0.01]}}})
    changed = _changed(SHIPPED, after)
    space = SHIPPED.split("\n  space:", 1)[1].split("\n")[3:]  # after its key's comment lines
    space = {"-" + line for line in space[:next(i for i, line in enumerate(space) if not line.startswith("    "))]}
    assert sorted(line for line in changed if line.startswith("-") and line not in space) == [
        next("-" + line for line in SHIPPED.splitlines() if line.startswith(k)) for k in ("  epochs:", "  path:")]
    epochs = next(line for line in after.splitlines() if line.startswith("  epochs:"))
    old = next(line for line in SHIPPED.splitlines() if line.startswith("  epochs:"))
    assert epochs.index("#") == old.index("#")  # the comment keeps its column
    raw = yaml.safe_load(after)
    assert raw["train"]["epochs"] == 3 and raw["data"]["path"] == "my data/x"
    assert raw["tune"]["space"] == {"train.lr_g": {"loguniform": [0.001, 0.01]}}


def test_set_values_refuses_a_key_the_file_lacks():
    with pytest.raises(EditError, match="'train.epoch'"):
        set_values(SHIPPED, {"train.epoch": 3})


def test_init_images_writes_settings_for_the_folder(tmp_path, capsys, monkeypatch):
    folder = _images(tmp_path / "my faces", per_class=150, side=9)  # an odd side does not halve: resized
    (tmp_path / "params.yaml").write_text(SHIPPED)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--images", str(folder)]) == 0
    after = (tmp_path / "params.yaml").read_text()
    p = load_params(tmp_path / "params.yaml")
    assert (p.data.source, p.data.path, p.data.name, p.data.image_size) == ("imagefolder", "my faces", "my-faces", 16)
    # FID's real side must outnumber the 128 features (+1, + a slack image per class): 30 held out are too few, so
    # the default split stays and FID compares with the 270 train images; the classifier reads a holdout of them
    assert p.preset == "cgan" and p.data.test_fraction == 0.1 and p.train.epochs == 1186  # ceil(5000 × 64 / 270)
    assert (p.evaluate.reference, p.evaluator.holdout) == ("train", 0.2)
    assert p.evaluator.epochs == 415  # ceil(700 × 128 / 216): the classifier trains on 80 % of the train split
    keys = {line[1:].split(":")[0].strip() for line in _changed(SHIPPED, after) if line.startswith("+")}
    assert keys == {"source", "name", "path", "image_size", "reference", "holdout", "epochs", "sample_every"}
    assert "300 images in 2 class folder(s)" in capsys.readouterr().out
    big = _images(tmp_path / "big", per_class=660, side=8)  # 132 held out: the test split is FID's real side
    assert cli.main(["init", "--images", str(big)]) == 0
    p = load_params(tmp_path / "params.yaml")  # the small set's reference and holdout undone
    assert (p.data.test_fraction, p.evaluate.reference, p.evaluator.holdout) == (0.1, "test", None)


def test_init_refuses_a_set_too_small_to_measure(tmp_path, capsys, monkeypatch):
    folder = _images(tmp_path / "few")
    (tmp_path / "params.yaml").write_text(SHIPPED)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--images", str(folder)]) == 2
    assert "24 images are too few to measure: FID's real side (at the least the train split, 90% of them) must " \
           "hold more than 128 images (the classifier evaluator's feature dimension); bring at least 146 images" \
        in capsys.readouterr().err
    assert (tmp_path / "params.yaml").read_text() == SHIPPED


def test_init_text_writes_the_model_out_of_the_preset(tmp_path, monkeypatch):
    words = "the cat sat on a mat with some other words here".split()
    lines = [" ".join(words[: 4 + i % 7]) for i in range(60)] + [" ".join(words * 3)]  # one long line
    (tmp_path / "s.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "params.yaml").write_text(SHIPPED)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--text", "s.txt"]) == 0
    p = load_params(tmp_path / "params.yaml")
    assert (p.preset, p.data.source, p.data.path, p.model.family) == (None, "textfile", "s.txt", "seqgan")
    assert p.data.seq_len == 11 and p.data.long_lines == "truncate"  # 95 % of lines whole (10 words + <eos>)
    preset = yaml.safe_load((REPO / "components/presets/seqgan_text.yaml").read_text())
    assert p.seqgan.pretrain_steps == preset["seqgan"]["pretrain_steps"] and p.tune.metric == "nll_test"


def test_init_refuses_a_missing_folder_and_leaves_params_alone(tmp_path, capsys, monkeypatch):
    (tmp_path / "params.yaml").write_text(SHIPPED)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--images", "nowhere"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert (tmp_path / "params.yaml").read_text() == SHIPPED


def _sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out.stdout


def _prepare_stale(repo: Path) -> bool:
    status = json.loads(_sh(["dvc", "status", "prepare", "--json"], repo) or "{}")
    return any("changed deps" in entry for entry in status.get("prepare", []) if isinstance(entry, dict))


@pytest.mark.e2e
def test_a_file_deleted_added_or_edited_reruns_prepare(tmp_path, monkeypatch):
    repo = copy_project(tmp_path / "repo", {"data": {"row_group_rows": 8}})
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        _sh(cmd, repo)
    folder = _images(repo / "data" / "own" / "shapes", per_class=150)
    monkeypatch.chdir(repo)
    assert cli.main(["init", "--images", str(folder)]) == 0
    assert load_params(repo / "params.yaml").data.path == "data/own/shapes"
    _sh(["dvc", "repro", "prepare"], repo)
    manifest = repo / "data" / "prepared" / "shapes" / "manifest.json"
    assert json.loads(manifest.read_text())["count"] == 300 and not _prepare_stale(repo)

    first = folder / "c1" / "00.png"
    saved = first.read_bytes()
    changes = {"deleted": lambda: first.unlink(),
               "added": lambda: Image.new("L", (8, 8), 255).save(folder / "c0" / "new.png"),
               "edited": lambda: Image.new("L", (8, 8), 0).save(first)}  # same name, other pixels
    undo = {"deleted": lambda: first.write_bytes(saved), "added": lambda: (folder / "c0" / "new.png").unlink(),
            "edited": lambda: first.write_bytes(saved)}
    for what, change in changes.items():
        change()
        assert _prepare_stale(repo), f"a file {what} under data.path left prepare up to date"
        undo[what]()
        assert not _prepare_stale(repo), what

    first.unlink()
    _sh(["dvc", "repro", "prepare"], repo)
    assert json.loads(manifest.read_text())["count"] == 299 and not _prepare_stale(repo)


def test_init_of_one_kind_after_the_other_leaves_nothing_of_the_first(tmp_path, monkeypatch):
    folder = _images(tmp_path / "pics", per_class=150)
    (tmp_path / "s.txt").write_text("\n".join(" ".join(["word"] * (3 + i % 5)) for i in range(40)) + "\n")
    (tmp_path / "params.yaml").write_text(SHIPPED)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--images", str(folder)]) == 0
    assert cli.main(["init", "--text", "s.txt"]) == 0
    p = load_params(tmp_path / "params.yaml")  # the image set's reference, holdout and budget undone
    assert (p.evaluate.reference, p.evaluator.holdout, p.train.epochs, p.evaluator.epochs) == ("test", None, 74, 20)
    assert cli.main(["init", "--images", str(folder)]) == 0
    back = load_params(tmp_path / "params.yaml")  # the text model undone: the image default's family and sizes
    assert (back.model.family, back.train.batch_size, back.train.lr_g, back.tune.metric) == ("dcgan", 32, 2e-4, None)
    assert back.seqgan == load_params(REPO / "params.yaml").seqgan and back.tune.space == load_params(
        REPO / "params.yaml").tune.space


def test_init_again_on_the_same_data_changes_nothing(tmp_path, capsys, monkeypatch):
    folder = _images(tmp_path / "pics", per_class=150)
    (tmp_path / "params.yaml").write_text(SHIPPED)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--images", str(folder)]) == 0
    first = (tmp_path / "params.yaml").read_text()
    assert cli.main(["init", "--images", str(folder)]) == 0
    assert (tmp_path / "params.yaml").read_text() == first and "nothing new" in capsys.readouterr().out
