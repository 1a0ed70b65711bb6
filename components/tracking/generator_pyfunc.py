"""MLflow "model from code" for a trained generator, denoiser, VAE or translator.

The logged model holds this file, the network's safetensors weights and its JSON spec; loading it
rebuilds the network from code (its family's `build_generator`) and reads tensors — nothing is unpickled.

predict(model_input) with model_input a dict (MLflow's `inputs` / `instances` formats hand over numpy
arrays) or a one-row DataFrame (`dataframe_records`, `dataframe_split`, CSV, Parquet); what it takes is the
family's `pyfunc_inputs` (components/families/), recorded in the MLmodel's metadata["inputs"]. Anything
else, a wrongly typed value and an empty request are refused naming the key, and at most
`serving.max_samples` samples per request (components/serving_inputs.py). No MLflow signature: the
request reaches predict as sent (logged_model.log_generator says why).
  num_samples (int, default 16, or len(labels)), seed (int, default 0)
  labels      (class-conditional GANs and diffusion models: one class index, or one per sample;
               default every class in turn)
  steps, guidance, sampler, eta (diffusion models: default as trained; see params.yaml `diffusion`)
  temperature (seqgan: default as trained)
  images      (translators, pix2pix / cyclegan: the batch to translate, N×C×H×W floats in [-1, 1] shaped
               like the dataset's inputs — or uint8 0..255 — and nothing else is needed)
  reverse     (cyclegan: true translates domain B → A; default A → B)
returns float32 images N×C×H×W in [-1, 1], or points N×D for a points model (e.g. the 2D mixtures);
the weights are the EMA ones when the run kept them."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

_BATCHES = ("labels", "images")  # inputs that hold several values; the others are one scalar each


def _scalar(key: str, value):
    """One value: a one-row column's, a 0-d or one-element array's (MLflow's `inputs` format), or the value,
    as a Python object (np.str_("many") → "many": messages show the value as it was sent).
    A column whose rows differ is refused: one request asks for one set of samples."""
    from components.serving_inputs import RequestError

    if hasattr(value, "iloc"):  # pandas Series / column
        distinct = {repr(v) for v in value}
        if len(distinct) > 1:
            raise RequestError(f"{key}: {len(value)} rows with different values; send one request per setting")
        value = value.iloc[0]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value.tolist()
    elif isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return value.item() if isinstance(value, np.generic) else value


def _batch(key: str, value):
    if not hasattr(value, "iloc"):
        return value
    if len(value) == 1:
        return value.iloc[0]
    return np.stack(list(value)) if key == "images" else list(value)  # a DataFrame column holding the batch


def plain_inputs(model_input, takes=("num_samples", "seed")) -> dict:
    """A dict or one-row DataFrame as {input name: value}, None values dropped; `takes`: the model's input
    names, for the message when the request names none."""
    from components.serving_inputs import RequestError, short

    if model_input is None:
        return {}
    if not hasattr(model_input, "keys"):
        shown = model_input.tolist() if isinstance(model_input, np.ndarray) else model_input
        raise RequestError(f"expected named inputs ({', '.join(takes)}), got {short(shown)}")
    if hasattr(model_input, "iloc") and len(model_input) == 0:  # `{"dataframe_records": []}`, a header-only CSV
        raise RequestError(f"the request has no rows; send one row of inputs ({', '.join(takes)})")
    out = {}
    for key in list(model_input.keys()):
        value = _batch(key, model_input[key]) if key in _BATCHES else _scalar(key, model_input[key])
        if value is not None and not (isinstance(value, float) and np.isnan(value)):  # NaN: a missing cell
            out[key] = value
    return out


class GeneratorModel(PythonModel):
    def load_context(self, context):
        from components.families import family_of_spec
        from components.serving_inputs import max_samples
        from components.training.checkpoint import load_generator

        self.generator, self.spec = load_generator(Path(context.artifacts["generator"]))
        self.family = family_of_spec(self.spec)
        self.max_samples = max_samples((getattr(context, "model_config", None) or {}).get("max_samples"))
        self.takes = tuple(self.family.served_inputs(self.generator))

    # model_input: a DataFrame or a dict of arrays, as MLflow parsed the request body (plain_inputs takes
    # both). The hint is not one MLflow infers a signature from, so it adds none.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from components.serving_inputs import RequestError

        try:
            return self.family.predict(self.generator, self.spec, plain_inputs(model_input, self.takes),
                                       self.max_samples)
        except RequestError as e:  # the scoring server answers 400 with this message, without a traceback
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None


mlflow.models.set_model(GeneratorModel())
