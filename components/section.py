"""The base of every params.yaml section: a strict, frozen pydantic model. Shared by the config package
and the family modules (each declares its own section), and importing it imports no torch."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConfigError(ValueError):
    """A params file or override that cannot be used; the message names key, value and rule."""


class Section(BaseModel):
    # extra="forbid": a misspelt key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# Field metadata: a key that changes no trained weight (logging cadence, file names…). Every other key
# of a section that a family trains from is part of its run key, so a new key cannot be forgotten.
BOOKKEEPING = {"bookkeeping": True}
# Field metadata: a sampling setting, read when samples are drawn (it may change after training).
SAMPLING = {"sampling": True}


def keys_marked(section: type[BaseModel], marker: dict) -> tuple[str, ...]:
    """The section's keys whose Field carries `marker` (BOOKKEEPING or SAMPLING)."""
    (flag,) = marker
    return tuple(name for name, f in section.model_fields.items()
                 if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get(flag))


def weight_settings(section: BaseModel) -> dict:
    """A section's values that change the trained weights: all but its bookkeeping and sampling keys."""
    skip = set(keys_marked(type(section), BOOKKEEPING)) | set(keys_marked(type(section), SAMPLING))
    return section.model_dump(mode="json", exclude=skip)


def bookkeeping(default, **kwargs):
    """A Field that is bookkeeping (see BOOKKEEPING)."""
    return Field(default, json_schema_extra=BOOKKEEPING, **kwargs)


def sampling(default, **kwargs):
    """A Field that is a sampling setting (see SAMPLING)."""
    return Field(default, json_schema_extra=SAMPLING, **kwargs)
