"""The family contract (components/families/): every family's run key holds exactly the settings that change
its weights, its pyfunc refuses what it does not take, tune and promote rank by the same metric — and
the structure that keeps it so: no import circles (lazy ones included), stages that never import each other,
no family module that imports another's, a config that imports no torch, nothing outside the family modules
that branches on a family's name."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from components.families import FAMILIES
from components.section import BOOKKEEPING, SAMPLING, ConfigError, keys_marked
from conftest import REPO, exported, family_params
from pipelines import cli

MANIFEST = {"content_hash": "0" * 64, "dataset": "d"}


def _names(params):
    from pipelines.train import run_name_for
    from pipelines.tune import sweep_name

    return run_name_for(params, MANIFEST), sweep_name(params, MANIFEST)


def _other_values(field, current):
    """Candidate values unlike `current`, valid for the field's type (the config may still refuse some)."""
    ann = field.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) is typing.Literal:
        return [v for v in typing.get_args(ann) if v != current]
    if isinstance(current, bool) or bool in args or ann is bool:
        return [not current] if isinstance(current, bool) else [True, False]
    if isinstance(current, int) or ann is int or int in args:
        base = current if isinstance(current, int) else 1
        return [base + 1, base - 1, base * 2, 2]
    if isinstance(current, float) or ann is float or float in args:
        base = current if isinstance(current, float) else 0.01
        return [base * 0.5, base + 0.05, base * 2, 0.01, 0.1]
    if isinstance(current, list):
        return [current[:-1], [*current, current[-1]], [c * 2 for c in current]]
    if isinstance(current, str) or ann is str or str in args:
        return ["other"]
    return []


def _weight_keys(params) -> list[str]:
    family = params.family
    sections = ["model", "train", *([family.section] if family.section else [])]
    out = []
    for section in sections:
        cls = type(getattr(params, section))
        skip = set(keys_marked(cls, BOOKKEEPING)) | set(keys_marked(cls, SAMPLING)) | {"family"}
        out += [f"{section}.{k}" for k in cls.model_fields if k not in skip]
    return out


@pytest.mark.parametrize("name", FAMILIES.names())
def test_every_weight_key_renames_the_run_and_the_sweep_and_bookkeeping_does_not(name):
    params = family_params(name)
    run, sweep = _names(params)
    changed, refused = [], []
    for key in _weight_keys(params):
        section, field = key.split(".")
        info = type(getattr(params, section)).model_fields[field]
        current = getattr(getattr(params, section), field)
        for value in (v for v in _other_values(info, current) if v != current):
            try:
                other = params.with_overrides({key: value})
            except ConfigError:
                continue
            new_run, new_sweep = _names(other)
            assert new_run != run, f"{name}: {key} = {value!r} changes the weights but not the run name"
            if key in ("train.epochs", "train.max_steps"):  # a trial runs tune.trial_steps instead
                assert new_sweep == sweep, f"{name}: {key} = {value!r} is train's budget, not a trial's"
            else:
                assert new_sweep != sweep, f"{name}: {key} = {value!r} changes the weights but not the sweep name"
            changed.append(key)
            break
        else:
            refused.append(key)  # every other value refused for this family: it cannot be changed silently
    # the keys this family trains from really were exercised (the GAN keys are refused by diffusion and VAE)
    assert len(changed) >= 10, (name, changed, refused)
    for key, value in [("train.log_every", 7), ("train.checkpoint_every", 9), ("train.keep_checkpoints", 5),
                       ("train.sample_grid", 16), ("train.sample_every", 3), ("train.num_threads", 1),
                       ("train.output_dir", "elsewhere"), ("tune.report", "r.json"), ("tune.output_dir", "t"),
                       ("evaluate.num_samples", 999), ("promote.alias", "best")]:
        assert _names(params.with_overrides({key: value})) == (run, sweep), f"{name}: bookkeeping {key} renamed it"


def test_the_keys_the_old_run_name_forgot_now_rename_the_run():
    # before the family contract, run_name_for hashed model/train/diffusion only
    vae = family_params("vae")
    assert _names(vae.with_overrides({"vae.beta": 0.5}))[0] != _names(vae)[0]
    pix = family_params("pix2pix")
    assert _names(pix.with_overrides({"translation.g_depth": 1}))[0] != _names(pix)[0]
    ddpm = family_params("ddpm")
    assert _names(ddpm.with_overrides({"diffusion.sample_steps": 10}))[0] == _names(ddpm)[0]  # sampling only


@pytest.mark.parametrize("name", FAMILIES.names())
def test_tune_and_promote_rank_by_the_same_default_metric(name, tmp_path):
    from components.evaluation import metric_and_mode
    from components.tracking.promotion import promotion_metric

    params = family_params(name).with_overrides({"data.prepared_dir": str(tmp_path), "tune.metric": None,
                                                  "promote.metric": None})
    family = params.family
    for kind in family.data_kinds:
        prepared = params.prepared_path(tmp_path)
        prepared.mkdir(parents=True, exist_ok=True)
        (prepared / "manifest.json").write_text(json.dumps({
            "format_version": 1, "kind": "pairs" if family.pairing else kind, "image_shape": [1, 8, 8],
            "class_names": ["0", "1"], "content_hash": "x", "splits": {"train": {"files": []}, "test": {"files": []}}}))
        tuned, _ = metric_and_mode(params, kind)
        assert tuned == promotion_metric(params, tmp_path) == family.default_metric(kind)
        assert tuned in family.metric_names(params, kind)
    expected = {"pix2pix": "psnr", "cyclegan": "label_preservation", "mlp": "reverse_kl", "seqgan": "nll_test",
                "relgan": "nll_test"}.get(name, "fid")
    assert family.default_metric(family.data_kinds[0]) == expected


@pytest.mark.parametrize("name", FAMILIES.names())
def test_each_pyfunc_refuses_the_inputs_its_family_does_not_take(name):
    from components.tracking.generator_pyfunc import plain_inputs

    family, g, spec = exported(name)
    sampling_only = [k for k in ("steps", "guidance", "sampler", "eta") if k not in family.pyfunc_inputs]
    for key in sampling_only:  # the documented message, never a TypeError deep in a sampler
        with pytest.raises(ValueError, match=rf"^{key}: (sampling options of diffusion models|ddpm's sampling options"
                                             rf"; a ddgan samples in exactly .*); a {name} model takes"):
            family.predict(g, spec, plain_inputs({key: 5}), 64)
    with pytest.raises(ValueError, match=rf"colour: not an input of this model; a {name} model takes"):
        family.predict(g, spec, plain_inputs({"colour": 1}), 64)
    if "images" in family.pyfunc_inputs:
        out = family.predict(g, spec, plain_inputs({"images": [[[[0.0] * 8] * 8]] * 3}), 64)
    else:
        out = family.predict(g, spec, plain_inputs({"num_samples": 3, "seed": 1, **(
            {"steps": 2} if "steps" in family.pyfunc_inputs else {})}), 64)
    if name in ("seqgan", "relgan"):  # text: one row per sample, its token ids and its sentence
        assert list(out.columns) == ["tokens", "sentence"] and len(out) == 3
        assert all(len(t) == spec["image_shape"][0] for t in out["tokens"])
        return
    assert out.shape == (3, *spec["image_shape"]) and out.dtype.name == "float32"


def test_vae_pyfunc_refuses_steps_with_the_documented_message():
    family, g, spec = exported("vae")
    with pytest.raises(ValueError) as e:
        family.predict(g, spec, {"steps": 10}, 64)
    assert str(e.value) == "steps: sampling options of diffusion models; a vae model takes num_samples, seed"


# ------------------------------------------------------------------------------------------- structure

def _run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_importing_the_config_loads_no_torch_diffusers_or_ray():
    out = _run_python("import sys, components.config, components.families; "
                      "print(sorted(m for m in ('torch', 'diffusers', 'ray', 'mlflow') if m in sys.modules))")
    assert out.strip() == "[]"


@pytest.mark.parametrize("overrides", [[], ["train.batch_sise=3"],
                                       ["train.objective=hinge", "train.label_smoothing=0.1"]])
def test_validating_params_and_reporting_a_config_error_load_no_torch(overrides):
    """A typo is reported in about a second: validation (objective names and properties included) and
    the CLI's error path never wait for torch (~6 s to import)."""
    code = ("import sys\nfrom pipelines import cli\n"
            f"rc = cli.main(['train', '--set', 'train.max_steps=0'] + {[f'--set={o}' for o in overrides]!r})\n"
            "print(rc, sorted(m for m in ('torch', 'diffusers', 'ray', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "2 []", (out.stdout, out.stderr[-2000:])


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _imports(path: Path, type_checking: bool = True) -> set[str]:
    """Our modules `path` imports anywhere, at module level or inside a function (`from a.b import c` counts
    a.b, and a.b.c when that is a module); without `type_checking`, not those under `if TYPE_CHECKING:`,
    which never run."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    if not type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                skipped |= {id(n) for statement in node.body for n in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in ("components", "pipelines")}


def _our_modules() -> dict[str, Path]:
    return {_module_name(p): p for d in ("components", "pipelines") for p in (REPO / d).rglob("*.py")}


def _executed_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that importing module `name`, or calling into it, executes: every import in it, lazy ones
    inside functions too (only those under TYPE_CHECKING never run), and for an import of `a.b.c` the package
    `a.b` as well (its __init__ runs first), unless `name` is inside that package."""
    out = set()
    for imported in _imports(path, type_checking=False) & (modules.keys() - {name}):
        parts = imported.split(".")
        packages = {".".join(parts[:k]) for k in range(1, len(parts))}
        out |= {imported} | {p for p in packages if p in modules and p != name and not name.startswith(p + ".")}
    return out


def test_no_import_circles():
    """Lazy imports included: a circle broken only by importing inside a function still ties the two
    modules together (neither can be understood, tested or moved without the other)."""
    modules = _our_modules()
    graph = {m: _executed_imports(m, p, modules) for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " → ".join([*path[path.index(n):], n]))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_stages_never_import_each_other_and_components_never_import_pipelines():
    stages = {f"pipelines.{s}" for s in cli.STAGES}
    for name, path in _our_modules().items():
        imported = _imports(path)
        if name.startswith("components"):
            assert not {i for i in imported if i.startswith("pipelines")}, f"{name} imports {imported}"
        if name in stages:
            assert not (imported & stages) - {name}, f"stage {name} imports stage(s) {(imported & stages) - {name}}"


def test_no_family_module_imports_another_familys_module():
    """A family is one module: what two families share lives in a shared module (families/base.py,
    families/translation.py, components/diffusion/settings.py…), never in one of the families."""
    modules = _our_modules()
    family_modules = {type(f).__module__ for f in FAMILIES.values()}
    assert len(family_modules) == len(FAMILIES.names()) and all(m in modules for m in family_modules)
    offenders = [f"{m} imports {', '.join(sorted(others))}" for m in sorted(family_modules)
                 if (others := (_imports(modules[m]) & family_modules) - {m})]
    assert not offenders, "\n".join(offenders)


def test_nothing_outside_the_family_modules_names_a_family_or_guesses_a_model_type():
    families = set(FAMILIES.names())
    offenders = []
    for name, path in _our_modules().items():
        if name.startswith(("components.families", "components.models.", "components.diffusion")):
            continue  # a network module may name its own family in its messages; "ddpm" is also a sampler
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in families and name != "components.model_config":
                offenders.append(f"{name}:{node.lineno} names {node.value!r}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr" and \
                    isinstance(node.args[1], ast.Constant) and node.args[1].value in ("sample", "translate", "conditional"):
                offenders.append(f"{name}:{node.lineno} guesses the model type with hasattr({node.args[1].value!r})")
            if isinstance(node, ast.Attribute) and node.attr in ("is_diffusion", "kind") and \
                    isinstance(node.value, ast.Attribute) and node.value.attr == "model":
                offenders.append(f"{name}:{node.lineno} branches on model.{node.attr}")
    assert not offenders, "\n".join(offenders)


@pytest.fixture
def affine_family():
    """docs/adding-a-family.md's example: a family added as one class, removed from the registry after."""
    from torch import nn

    from components.families.base import LatentGan

    class Affine(LatentGan):
        name = "affine"
        data_kinds = ("points",)

        def networks(self, model_cfg, sample_shape, d_shape, num_classes):
            from components.models.mlp import build

            _, d = build(model_cfg, sample_shape, d_shape, num_classes)
            return nn.Linear(model_cfg.latent_dim, sample_shape[0]), d  # G: x = Az + b

    FAMILIES.register("affine")(Affine())
    yield FAMILIES.get("affine")
    FAMILIES.unregister("affine")


def test_a_new_family_is_one_module(affine_family, tmp_path):
    from torch import nn

    from components.evaluation import metric_and_mode
    from components.sampling import latent_samples
    from components.tracking.generator_pyfunc import plain_inputs
    from components.training import checkpoint as ckpt
    from components.training.loop import Worker, train_model
    from conftest import tiny_params
    from pipelines import prepare

    params = tiny_params(tmp_path, data={"source": "ring8", "row_group_rows": 4096, "rows_per_shard": 100_000},
                         model={"family": "affine", "latent_dim": 2, "hidden_layers": 1},
                         train={"max_steps": 4, "batch_size": 64})
    assert params.family is affine_family
    final = {}

    class Keep:
        def log(self, step, metrics): pass
        def samples(self, step, epoch, image, suffix): pass
        def checkpoint(self, step, state, metrics): final["state"] = state

    prepared = prepare.run(params, tmp_path)
    summary = train_model(params, prepared, Worker(), Keep())
    assert summary["step"] == 4 and set(affine_family.task) == {"components.training.gan_loop", "GanTask"}
    ckpt.write_generator(final["state"], tmp_path)
    g, spec = ckpt.load_generator(tmp_path)
    assert isinstance(g, nn.Linear) and spec["model"]["family"] == "affine"
    fake, labels = params.family.generate(g, params, None, 50)
    assert fake.shape == (50, 2) and labels is None
    assert metric_and_mode(params, "points") == ("reverse_kl", "min")
    served = affine_family.predict(g, spec, plain_inputs({"num_samples": 5, "seed": 3}), 64)
    assert (served == latent_samples(g, 2, 5, 3).numpy()).all()
    with pytest.raises(ValueError, match="labels: this model is unconditional; a affine model takes num_samples, seed"):
        affine_family.predict(g, spec, {"labels": 1}, 64)


def test_the_example_family_left_nothing_in_the_registry():
    assert "affine" not in FAMILIES and FAMILIES.names() == ["cyclegan", "dcgan", "ddgan", "ddpm", "mlp", "pix2pix",
                                                                  "relgan", "seqgan", "vae"]
