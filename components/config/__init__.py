"""Typed, validated configuration: one pydantic model per params.yaml section.

- `sections`: the shared sections (data, model, train, scaling, tracking, evaluator, evaluate, promote, modes)
- `tuning`: the tune section (search space, search, schedulers)
- `params`: `Params`, composed of those and of each family's own section (components/families/)
- `loading`: params file → preset → --set overrides → `Params`

Everything is checked before any work starts; an error names the key, the bad value and what is
allowed (`ConfigError`). Importing the config imports neither torch, diffusers nor Ray."""
from components.config.loading import PRESETS_DIR, apply_overrides, load_params, preset_names
from components.config.params import Params
from components.config.sections import (DataConfig, EvaluateConfig, EvaluatorConfig, ModesConfig, PromoteConfig,
                                        ScalingConfig, TrackingConfig, TrainConfig)
from components.config.tuning import AshaConfig, PbtConfig, SpaceEntry, TuneConfig, tunable_sections
from components.model_config import ModelConfig
from components.section import ConfigError, Section

__all__ = ["PRESETS_DIR", "apply_overrides", "load_params", "preset_names", "Params", "DataConfig", "EvaluateConfig",
           "EvaluatorConfig", "ModelConfig", "ModesConfig", "PromoteConfig", "ScalingConfig", "TrackingConfig",
           "TrainConfig", "AshaConfig", "PbtConfig", "SpaceEntry", "TuneConfig", "tunable_sections", "ConfigError",
           "Section"]
