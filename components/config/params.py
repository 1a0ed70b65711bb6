"""`Params`: the whole params.yaml as one typed object. Its sections are the shared ones
(components/config/sections.py), `tune` (tuning.py) and one per family that declares one
(components/families/: diffusion, translation, vae…), so a new family's section needs no edit here."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from components.config.sections import (DataConfig, EvaluateConfig, EvaluatorConfig, ModesConfig, PromoteConfig,
                                        ScalingConfig, ServingConfig, TrackingConfig, TrainConfig)
from components.config.tuning import TuneConfig
from components.families import FAMILIES, family_of
from components.metrics import evaluators
from components.model_config import ModelConfig
from components.section import ConfigError, Section


class _Params(Section):
    seed: int = Field(0, ge=0, lt=2**31)
    preset: str | None = Field(None, description="named partial params (components/presets/<name>.yaml) "
                               "applied over the params file, under --set overrides")
    # default_factory: a default section is validated when used, not at import (validators load registries)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> "_Params":
        _metrics_known(self)
        if self.data.source == "imagefolder" and not self.data.path:
            raise ValueError("data.path is required when data.source is 'imagefolder'")
        evaluators.check_config(self)  # what the evaluator needs, and the data only one evaluator can score
        self.family.validate(self)  # the combinations the family refuses, each with its reason
        return self

    @property
    def family(self):
        """The model family (components/families/) that everything about this run asks."""
        return family_of(self.model.family, self.data.pairs)

    def prepared_path(self, repo_root: Path) -> Path:
        """Absolute: later stages and Ray workers (which run in their own working directory) read it."""
        return (Path(repo_root) / self.data.prepared_dir / self.data.dataset).resolve()

    @property
    def registered_model_name(self) -> str:
        return self.promote.model_name or f"{self.data.dataset}-{self.model.family}"

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or f"{self.data.dataset}-{self.model.family}"

    def with_overrides(self, values: dict[str, Any], source: str = "overrides") -> "Params":
        """These params with dotted keys (`train.lr_g`: 1e-3) replaced, validated like a params file."""
        raw = self.model_dump(mode="json")
        for key, value in values.items():
            node = raw
            *sections, last = key.split(".")
            for part in sections:
                node = node[part]
            node[last] = value
        try:
            return Params.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(format_errors(e, source)) from None

    def flat(self) -> dict[str, Any]:
        """Dotted keys → values, for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = obj

        walk("", self.model_dump(mode="json"))
        return out


def _family_sections() -> dict[str, Any]:
    sections = {}
    for f in FAMILIES.values():  # registration order: diffusion, translation, vae
        if f.section and f.section not in sections:  # pix2pix and cyclegan share `translation`
            sections[f.section] = (f.Section, Field(default_factory=f.Section))
    return sections


# Field order = params.yaml's order: the family sections sit after train, before scaling.
Params = create_model(
    "Params", __base__=_Params, __doc__="params.yaml, validated: one typed section per top-level key.",
    **_family_sections(),
    **{name: (section, Field(default_factory=section)) for name, section in (
        ("scaling", ScalingConfig), ("tracking", TrackingConfig), ("evaluator", EvaluatorConfig),
        ("evaluate", EvaluateConfig), ("promote", PromoteConfig), ("serving", ServingConfig),
        ("modes", ModesConfig), ("tune", TuneConfig))},
)


def _metrics_known(params) -> None:
    """tune.metric and promote.metric name metrics genpipe reports (components/metrics/catalogue.py), each
    refused at its own key, as a section's field validator would."""
    from components.metrics.catalogue import check_metric

    errors = []
    for section in ("promote", "tune"):  # in Params' field order
        name = getattr(params, section).metric
        if name is None:
            continue
        try:
            check_metric(name)
        except ValueError as e:
            errors.append(InitErrorDetails(type=PydanticCustomError("value_error", "Value error, {error}",
                                                                    {"error": str(e)}),
                                           loc=(section, "metric"), input=name))
    if errors:  # raised from the validator, a ValidationError keeps its keys
        raise ValidationError.from_exception_data("Params", errors)


def format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (value {e['input']!r}); check the spelling against params.yaml")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if isinstance(e["input"], dict):  # a cross-check of a whole section: its message names the keys
            lines.append(f"  {key}: {msg}")
            continue
        lines.append(f"  {key} = {e['input']!r}: {msg}")
    return "\n".join(lines)
