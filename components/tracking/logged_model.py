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

    import torch

    from components.models import is_diffusion
    from components.training.checkpoint import GENERATOR_SPEC

    requirements = [f"torch=={torch.__version__.split('+')[0]}", "safetensors", "numpy", "pydantic", "pyyaml"]
    if is_diffusion(json.loads((Path(model_dir) / GENERATOR_SPEC).read_text())["model"]["family"]):
        import diffusers

        requirements.append(f"diffusers=={diffusers.__version__}")
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(_PYFUNC_FILE),
        artifacts={"generator": str(model_dir)},
        code_paths=[str(_PACKAGE_DIR)],  # the model rebuilds its network from this code
        pip_requirements=requirements,
    )
