"""Reading params: the params file, then its preset (components/presets/<name>.yaml), then --set
overrides; validated into `Params` before any work (an error names key, value and rule)."""
from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from components.config.params import Params, format_errors
from components.section import ConfigError

PRESETS_DIR = Path(__file__).parents[1] / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """`section.key=value` strings (value parsed as YAML) applied onto a raw params dict."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = yaml.safe_load(text)
    return raw


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class PresetShadowsFile(UserWarning):
    """A key the params file changed from its default is set otherwise by the preset, which wins."""


def _leaves(node: dict[str, Any], prefix: str = ""):
    """(dotted key, value) of every non-mapping value in a nested params dict."""
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@functools.lru_cache(maxsize=1)
def _default_leaves() -> dict[str, Any]:
    return dict(_leaves(Params().model_dump()))


def _shadowed(raw: dict[str, Any], preset: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, file value, preset value) where the file moved a key off its code default and the
    preset sets it to something else: an edit the preset would silently undo. params.yaml keeps the code
    defaults, so it never warns as shipped. (A preset's tune.space replaces the file's whole: not compared.)"""
    mine, defaults = dict(_leaves(raw)), _default_leaves()
    return [(k, mine[k], v) for k, v in _leaves(preset) if not k.startswith("tune.space.")
            and k in mine and mine[k] != v and mine[k] != defaults.get(k, _MISSING)]


_MISSING = object()


def _with_preset(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """file → preset → --set: a preset overrides the params file; explicit overrides win over both."""
    name = apply_overrides(raw, overrides).get("preset")
    if name is None:
        return raw
    if not isinstance(name, str) or name not in preset_names():
        raise ConfigError(f"preset = {name!r}: unknown preset; available: {', '.join(preset_names())} "
                          f"(files in {PRESETS_DIR})")
    preset = yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text()) or {}
    for key, mine, theirs in _shadowed(raw, preset):
        warnings.warn(f"the params file sets {key} = {mine!r}, but preset {name!r} sets {theirs!r}, which wins: "
                      f"change it with --set {key}=…, or edit the preset", PresetShadowsFile, stacklevel=3)
    merged = _deep_merge(raw, {**preset, "preset": name})
    if "space" in preset.get("tune", {}):  # a space is one value: the preset's replaces the file's, never mixes
        merged["tune"]["space"] = preset["tune"]["space"]
    return merged


def load_params(path: str | Path | None = "params.yaml", overrides: Iterable[str] = ()) -> Params:
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"params file {str(p)!r} not found")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"params file {str(p)!r} is not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"params file {str(p)!r} must hold a mapping of sections, got {type(raw).__name__}")
        source = str(p)
    overrides = list(overrides)
    file_preset = raw.get("preset")
    raw = apply_overrides(_with_preset(raw, overrides), overrides)
    if overrides:
        source += " with --set " + " ".join(overrides)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source) + _preset_hint(file_preset, raw, overrides)) from None


def _preset_hint(file_preset: str | None, raw: dict[str, Any], overrides: list[str]) -> str:
    """A family set by --set under the params file's own preset (params.yaml: cgan) inherits that preset's
    keys, which the new family may refuse: say where they come from."""
    family_set = any(o.partition("=")[0].strip() == "model.family" for o in overrides)
    if file_preset is None or raw.get("preset") != file_preset or not family_set:
        return ""
    return (f"\n  (the params file's preset {file_preset!r} is applied over it: pick another family by its "
            f"preset, --set preset=<name>, or drop it with --set preset=null)")


def code_defaults(keys: Iterable[str]) -> dict[str, Any]:
    """Dotted key → its code default, as params.yaml writes it (unset fields of a mapping, such as a tune.space
    entry's other distributions, left out)."""
    def plain(v):
        return {k: plain(x) for k, x in v.items() if x is not None} if isinstance(v, dict) else v

    dump = Params().model_dump(mode="json")
    return {key: plain(lookup(dump, key)) for key in keys}


def lookup(node: Any, dotted: str, missing: Any = _MISSING) -> Any:
    """The value at a dotted key (section.key…) of a nested params dict, or `missing`."""
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return missing
        node = node[part]
    return node
