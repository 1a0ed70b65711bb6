"""`genpipe sample`: samples from any MLflow model URI (runs:/, models:/name@alias, models:/m-…) as a
PNG: an image grid, or a scatter plot for a 2D points model; a text model's sentences are printed and
written to the same path with the suffix .txt. A model whose family translates (pix2pix,
CycleGAN) translates the first n test inputs of the dataset it was trained on (data.prepared_dir/<dataset>):
input | output pairs."""
from __future__ import annotations

from pathlib import Path

import mlflow
import torch

from components.atomic import atomic_write
from components.config import Params
from components.families import family_of_spec
from components.tracking import mlflow_store
from components.training.images import preview_png


def run(params: Params, repo_root: Path, model_uri: str, n: int, seed: int, out: Path) -> Path:
    if n < 1:
        raise ValueError(f"--n must be ≥ 1, got {n}")
    uri = mlflow_store.resolve_uri(params.tracking.uri, Path(repo_root))
    mlflow.set_tracking_uri(uri)
    model = _load(model_uri, uri)
    python_model = model.unwrap_python_model()
    python_model.max_samples = max(python_model.max_samples, n)  # the per-request bound is the server's
    spec = python_model.spec
    family = family_of_spec(spec)
    if "images" in family.pyfunc_inputs:  # it translates: real inputs
        from components.data.shards import load_rank_inputs
        from components.families.base import SampleFile
        from components.training.images import side_by_side
        from components.training.loop import to_model_space

        inputs = load_rank_inputs((Path(repo_root) / params.data.prepared_dir / spec["dataset"]).resolve(), "test")[0][:n]
        outputs = torch.from_numpy(model.predict({"images": inputs}))
        drawn = SampleFile(preview_png(side_by_side(to_model_space(torch.from_numpy(inputs)), outputs), cols=2), None,
                           "images")
    else:
        drawn = family.sample_file(model.predict({"num_samples": n, "seed": seed}))
    out = Path(out).with_suffix(drawn.suffix) if drawn.suffix else out
    atomic_write(out, drawn.content)
    if drawn.shown:
        print(drawn.shown)
    print(f"sample: {n} {drawn.what} from {model_uri} (seed {seed}) → {out}")
    return out


class SampleError(ValueError):
    """The model URI cannot be loaded; the message names it and what the store holds."""


def _load(model_uri: str, tracking_uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(model_uri)
    except MlflowException as e:
        first = str(e.message).strip().splitlines()[0] if str(e.message).strip() else type(e).__name__
        raise SampleError(f"cannot load {model_uri} from {tracking_uri}: {first}{_what_exists(model_uri)}") from None
    except OSError as e:  # a local path or artifact that is not there
        raise SampleError(f"cannot load {model_uri} from {tracking_uri}: {e}") from None


def _what_exists(model_uri: str) -> str:
    """For models:/<name>…: the registered names, or the name's versions and aliases."""
    if not model_uri.startswith("models:/") or model_uri.startswith("models:/m-"):
        return ""
    from mlflow.tracking import MlflowClient

    name = model_uri[len("models:/"):].split("@")[0].split("/")[0]
    try:
        client = MlflowClient()
        names = sorted(m.name for m in client.search_registered_models())
        if name not in names:
            return f"; registered models: {', '.join(names) or 'none'}"
        model = client.get_registered_model(name)
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        aliases = ", ".join(f"@{a}→v{v}" for a, v in sorted(model.aliases.items())) or "none"
        return f"; {name} has versions {', '.join(map(str, versions)) or 'none'}, aliases {aliases}"
    except Exception:  # the store itself is the problem: the first message says so
        return ""


def dry_run(params: Params, repo_root: Path, model_uri: str, n: int, seed: int, out: Path) -> dict:
    """What `run` would read and write (`genpipe sample --dry-run`); writes nothing, loads no model."""
    from components.options import shown, tracking_uri, written

    return {"reads": [f"{model_uri} from {tracking_uri(params, Path(repo_root))}"],
            "writes": [written(Path(out).resolve(), repo_root, f"{n} samples, seed {seed}; a text model: "
                                                               f"{shown(Path(out).with_suffix('.txt'), repo_root)}")],
            "reuses": [], "notes": ["a translating model reads the first test inputs of its dataset under "
                                    f"{params.data.prepared_dir}"]}
