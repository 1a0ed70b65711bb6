"""Log an exported generator folder as an MLflow pyfunc model (models-from-code)."""
from __future__ import annotations

import logging
from pathlib import Path

import mlflow

import components

_PYFUNC_FILE = Path(__file__).with_name("generator_pyfunc.py")
_PACKAGE_DIR = Path(components.__file__).parent


def log_generator(model_dir: Path, max_samples: int, name: str = "generator"):
    """Call inside an active run. Returns MLflow's ModelInfo (model_uri, model_id). `max_samples`: the
    served model's per-request bound (serving.max_samples), kept in its model_config.

    The names of the inputs the model takes (its family's; `labels` only for a class-conditional network)
    are recorded in the MLmodel's `metadata["inputs"]`, not as an MLflow signature. With a column signature
    MLflow's scoring server casts or refuses values before `predict` sees them (`true` served as 1 sample,
    a list of labels refused, every CSV body refused with a stack trace while a column is Any) and drops
    every undeclared key, so a wrong input could not be refused by name. Without one, `predict` sees the
    request as sent and checks every key (components/serving_inputs.py). No input example either: MLflow
    would infer a signature from it."""
    import json

    from components.families import family_of_spec
    from components.training.checkpoint import GENERATOR_SPEC

    spec = json.loads((Path(model_dir) / GENERATOR_SPEC).read_text())
    family = family_of_spec(spec)
    quiet = _WithoutSignatureNote()
    logging.getLogger("mlflow.pyfunc").addFilter(quiet)
    try:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(_PYFUNC_FILE),
            artifacts={"generator": str(model_dir)},
            code_paths=[str(_PACKAGE_DIR)],  # the model rebuilds its network from this code
            pip_requirements=family.pip_requirements(),
            metadata={"inputs": list(family.served_inputs(family.build_generator(spec)))},  # built, not loaded
            model_config={"max_samples": int(max_samples)},
        )
    finally:
        logging.getLogger("mlflow.pyfunc").removeFilter(quiet)


class _WithoutSignatureNote(logging.Filter):
    """Hides MLflow's warning that it could not infer a signature: the model has none on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "model signature cannot be inferred" not in record.getMessage()


def _artifacts_of(tracking_uri: str, model_uri: str):
    """(artifact location, MLflow artifact repository) of a logged model `models:/<model id>`."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking import MlflowClient

    if not model_uri.startswith("models:/m-"):
        raise LookupError(f"{model_uri} is not a logged-model URI (models:/<model id>)")
    model_id = model_uri.removeprefix("models:/").split("/")[0]
    try:
        where = MlflowClient(tracking_uri).get_logged_model(model_id).artifact_location
    except MlflowException as e:
        raise LookupError(f"the logged model {model_id} is not in the tracking store ({e.message})") from None
    return where, get_artifact_repository(where, tracking_uri=tracking_uri)


def download_generator(tracking_uri: str, model_uri: str, dst: Path) -> Path:
    """The exported generator folder of a logged model, downloaded under dst (check it first with
    logged_generator_problems; load it with checkpoint.load_generator, which verifies the weights)."""
    import yaml

    where, repo = _artifacts_of(tracking_uri, model_uri)
    mlmodel = yaml.safe_load(Path(repo.download_artifacts("MLmodel", str(dst))).read_text()) or {}
    folder = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {}).get("generator", {}).get("path")
    if folder is None:
        raise LookupError(f"{where}/MLmodel names no 'generator' artifact")
    return Path(repo.download_artifacts(folder, str(dst)))


def logged_generator_problems(tracking_uri: str, model_uri: str) -> list[str]:
    """What is wrong with the stored files of a logged generator (`models:/<model id>`): [] when its
    MLmodel, model code, spec and weights are all there and the weights match the hash in the spec
    (exports from before hashes were recorded: present and non-empty). Reads the files through
    MLflow's artifact repository, so a local store and a tracking server are checked alike."""
    import json
    import tempfile

    import yaml
    from mlflow.exceptions import MlflowException

    from components.training.checkpoint import GENERATOR_SPEC, GENERATOR_WEIGHTS, WEIGHTS_KEY, file_digest

    try:
        where, repo = _artifacts_of(tracking_uri, model_uri)
    except LookupError as e:
        return [str(e)]

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
