"""Log an exported generator folder as an MLflow pyfunc model (models-from-code)."""
from __future__ import annotations

from pathlib import Path

import mlflow

import components

_PYFUNC_FILE = Path(__file__).with_name("generator_pyfunc.py")
_PACKAGE_DIR = Path(components.__file__).parent


def log_generator(model_dir: Path, name: str = "generator"):
    """Call inside an active run. Returns MLflow's ModelInfo (model_uri, model_id)."""
    import json

    from components.families import FAMILIES
    from components.training.checkpoint import GENERATOR_SPEC

    family = FAMILIES.get(json.loads((Path(model_dir) / GENERATOR_SPEC).read_text())["model"]["family"])
    requirements = family.pip_requirements()
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(_PYFUNC_FILE),
        artifacts={"generator": str(model_dir)},
        code_paths=[str(_PACKAGE_DIR)],  # the model rebuilds its network from this code
        pip_requirements=requirements,
    )



def logged_generator_problems(tracking_uri: str, model_uri: str) -> list[str]:
    """What is wrong with the stored files of a logged generator (`models:/<model id>`): [] when its
    MLmodel, model code, spec and weights are all there and the weights match the hash in the spec
    (exports from before hashes were recorded: present and non-empty). Reads the files through
    MLflow's artifact repository, so a local store and a tracking server are checked alike."""
    import json
    import tempfile

    import yaml
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking import MlflowClient

    from components.training.checkpoint import GENERATOR_SPEC, GENERATOR_WEIGHTS, WEIGHTS_KEY, file_digest

    if not model_uri.startswith("models:/m-"):
        return [f"{model_uri} is not a logged-model URI (models:/<model id>)"]
    model_id = model_uri.removeprefix("models:/").split("/")[0]
    try:
        where = MlflowClient(tracking_uri).get_logged_model(model_id).artifact_location
    except MlflowException as e:
        return [f"the logged model {model_id} is not in the tracking store ({e.message})"]
    repo = get_artifact_repository(where, tracking_uri=tracking_uri)

    def listed(path: str) -> set[str]:
        try:
            return {f.path for f in repo.list_artifacts(path)}
        except (MlflowException, OSError):
            return set()

    with tempfile.TemporaryDirectory() as tmp:
        def fetch(path: str) -> Path | None:
            try:
                return Path(repo.download_artifacts(path, tmp))
            except (MlflowException, OSError):
                return None

        mlmodel = fetch("MLmodel")
        if mlmodel is None:
            return [f"{where}/MLmodel (missing)"]
        flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
        problems = []
        code_file = Path(flavor.get("model_code_path") or "").name  # models from code keep it at the root
        if code_file and code_file not in listed(""):
            problems.append(f"{where}/{code_file} (missing: the model's code)")
        if flavor.get("code") and not listed(flavor["code"]):
            problems.append(f"{where}/{flavor['code']}/ (missing or empty: the package the model imports)")
        folder = flavor.get("artifacts", {}).get("generator", {}).get("path")
        if folder is None:
            return [*problems, f"{where}/MLmodel names no 'generator' artifact"]
        present = listed(folder)
        problems += [f"{where}/{folder}/{name} (missing)" for name in (GENERATOR_SPEC, GENERATOR_WEIGHTS)
                     if f"{folder}/{name}" not in present]
        if problems:
            return problems
        spec_file, weights_file = fetch(f"{folder}/{GENERATOR_SPEC}"), fetch(f"{folder}/{GENERATOR_WEIGHTS}")
        if spec_file is None or weights_file is None:
            return [f"{where}/{folder}/{name} (listed but cannot be read)"
                    for name, f in ((GENERATOR_SPEC, spec_file), (GENERATOR_WEIGHTS, weights_file)) if f is None]
        try:
            record = json.loads(spec_file.read_text()).get(WEIGHTS_KEY)
        except ValueError as e:
            return [f"{where}/{folder}/{GENERATOR_SPEC} (unreadable JSON: {e})"]
        sha256, size = file_digest(weights_file)
        if record is None:
            return [] if size else [f"{where}/{folder}/{GENERATOR_WEIGHTS} (empty)"]
        if sha256 != record["sha256"] or size != int(record["size"]):
            return [f"{where}/{folder}/{GENERATOR_WEIGHTS} (corrupt: expected {record['size']} bytes with sha256 "
                    f"{record['sha256']}, found {size} bytes with sha256 {sha256})"]
        return []
