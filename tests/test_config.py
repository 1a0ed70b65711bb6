"""Config errors name the key, the bad value and what is allowed — before any work."""
from __future__ import annotations

import re
import sys
import types

import pytest
import yaml

from components.config import ConfigError, Params, load_params
from conftest import REPO
from pipelines import cli


def _write(tmp_path, raw) -> str:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


def test_repo_params_are_valid_and_match_the_typed_defaults():
    # params.yaml documents every knob; it must validate and, but for the preset that picks the default
    # model (reports/study/README.md) and data.path (data/own: the DVC dependency when no files of yours are
    # read), equal the code defaults.
    assert load_params(REPO / "params.yaml", ["preset=null", "data.path=null"]) == Params()
    default = load_params(REPO / "params.yaml")
    assert (default.model.family, default.model.conditioning, default.train.diffusion_d) == ("dcgan", "projection", True)


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(_write(tmp_path, {"train": {"batchsize": 32}}))
    assert "train.batchsize" in str(e.value) and "unknown key" in str(e.value)


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(_write(tmp_path, {"train": {"epochs": "many"}}))
    msg = str(e.value)
    assert "train.epochs" in msg and "'many'" in msg and "integer" in msg


def test_out_of_range_names_the_limit(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(_write(tmp_path, {"train": {"batch_size": 0}}))
    msg = str(e.value)
    assert "train.batch_size" in msg and "= 0" in msg and "greater than or equal to 1" in msg


def test_unknown_registry_name_lists_the_allowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(_write(tmp_path, {"data": {"source": "cifar"}}))
    msg = str(e.value)
    assert "data.source" in msg and "'cifar'" in msg and "mnist5k" in msg and "imagefolder" in msg


def test_imagefolder_needs_a_path(tmp_path):
    with pytest.raises(ConfigError, match="data.path is required"):
        load_params(_write(tmp_path, {"data": {"source": "imagefolder"}}))


def test_set_overrides_parse_yaml_values(tmp_path):
    p = load_params(_write(tmp_path, {}), ["train.epochs=3", "scaling.use_gpu=true", "train.lr_g=1e-3", "data.name=x"])
    assert (p.train.epochs, p.scaling.use_gpu, p.train.lr_g, p.data.name) == (3, True, 1e-3, "x")


def test_set_override_errors_name_the_override(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_params(_write(tmp_path, {}), ["train.epochs=-1"])
    assert "--set train.epochs=-1" in str(e.value) and "train.epochs" in str(e.value)
    with pytest.raises(ConfigError, match="section.key=value"):
        load_params(_write(tmp_path, {}), ["train.epochs"])


# Every `genpipe` subcommand (dvc.yaml's stages and the two tools), with the arguments it requires.
EVERY_STAGE = {"prepare": [], "evaluator": [], "tune": [], "train": ["--no-ray"], "evaluate": [], "promote": [],
               "sample": ["--model", "models:/m@champion"], "modes": ["--dataset", "ring8"]}


def test_every_stage_is_covered_below():
    assert set(EVERY_STAGE) == set(cli.STAGES)


@pytest.mark.parametrize("bad, key", [({"scaling": {"num_workers": 0}}, "scaling.num_workers"),
                                      ({"train": {"batchsize": 32}}, "train.batchsize")])
@pytest.mark.parametrize("stage", sorted(EVERY_STAGE))
def test_cli_reports_config_errors_before_any_work(stage, bad, key, tmp_path, capsys, monkeypatch):
    # A stage module that is reached despite the bad config fails the test at once instead of working.
    started = []

    def refuse(*args, **kwargs):
        started.append(stage)
        raise AssertionError(f"genpipe {stage} went on with an invalid config")

    import pipelines

    for name in EVERY_STAGE:
        stub = types.ModuleType(f"pipelines.{name}")
        stub.run = refuse
        monkeypatch.setitem(sys.modules, f"pipelines.{name}", stub)
        monkeypatch.setattr(pipelines, name, stub, raising=False)
    cwd = tmp_path / "repo"
    cwd.mkdir()
    params = _write(cwd, bad)
    monkeypatch.chdir(cwd)
    rc = cli.main([stage, "--params", params, *EVERY_STAGE[stage]])
    err = capsys.readouterr().err
    assert rc == 2 and f"genpipe {stage}: " in err and key in err, (rc, err)
    assert not started
    assert [p.name for p in cwd.iterdir()] == ["params.yaml"]  # nothing written: no data/, mlflow/, reports/


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_cli_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for stage in EVERY_STAGE:
        assert re.search(rf"^ +{stage}\b", out, re.M), stage  # the subcommand's own line in the list


def test_a_file_key_the_preset_overrides_is_warned_about(tmp_path):
    """A preset wins over the params file: an edit to a key it sets would be silently undone, so it is
    named. The shipped params.yaml (code defaults under `preset: cgan`) warns about nothing."""
    import warnings

    from components.config.loading import PresetShadowsFile

    with warnings.catch_warnings():
        warnings.simplefilter("error", PresetShadowsFile)
        load_params(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["model"]["conditioning"] = "concat"
    raw["train"]["epochs"] = 5  # not a cgan key: no warning
    with pytest.warns(PresetShadowsFile, match=r"sets model.conditioning = 'concat', but preset 'cgan' sets 'projection'") as w:
        params = load_params(_write(tmp_path, raw))
    assert len(w) == 1 and params.model.conditioning == "projection" and params.train.epochs == 5


def _leaf_keys(node: dict, prefix: str = "") -> set[str]:
    """Dotted keys of a params mapping; tune.space and mapping-valued knobs are one key each."""
    out = set()
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in ("tune.space", "tune.asha", "tune.pbt", "scaling.resources_per_worker"):
            out |= _leaf_keys(v, key + ".")
        else:
            out.add(key)
    return out


def _model_keys(model, prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields") and f"{prefix}{name}" != "tune.asha" \
                and f"{prefix}{name}" != "tune.pbt":
            out |= _model_keys(sub, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def test_params_yaml_shows_every_knob_and_every_preset_key():
    """What a stage compares against is what the user sees: every config key and every key a preset sets is in
    params.yaml (with its comment), so `genpipe init` and `dvc exp run -S` can set it there."""
    from components.config.loading import PRESETS_DIR

    shipped = _leaf_keys(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert _model_keys(Params) - shipped == set()
    for preset in sorted(PRESETS_DIR.glob("*.yaml")):
        assert _leaf_keys(yaml.safe_load(preset.read_text())) - shipped == set(), preset.name
