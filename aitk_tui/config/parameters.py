"""``infra/provision/inference.parameters.json``: an ARM deployment-parameters file.

Round-trip safe: unknown keys, key order, ``$schema``/``contentVersion`` and the file's
indentation are kept; only an edited value changes. A file that does not parse raises
:class:`ParametersFileError` and is never written back. ``null`` values mean "the
template's default" (AI Toolkit's convention) and are dropped before the ARM call.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AitkError
from ..fsutil import atomic_write_text
from .naming import PARAMETER_SPECS, SPECS_BY_NAME, NameError_

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"


class ParametersFileError(AitkError):
    """The parameters file could not be read or parsed; it was left untouched."""


class _ParamValue(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: Any = None


class _ParamsFileShape(BaseModel):
    """The shape ARM accepts; extra top-level keys are kept as they are."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    schema_: str | None = Field(default=None, alias="$schema")
    contentVersion: str | None = None
    parameters: dict[str, _ParamValue]


def _indent_of(text: str) -> int | str:
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) != len(line):
            ws = line[: len(line) - len(stripped)]
            return "\t" if ws.startswith("\t") else len(ws)
    return 2


class ParametersDocument:
    """The parsed file plus the raw structure it round-trips."""

    def __init__(self, path: Path, raw: dict[str, Any], indent: int | str = 2, original_text: str | None = None):
        self.path = Path(path)
        self._raw = raw
        self._indent = indent
        self._original_text = original_text

    # -- reading -----------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> "ParametersDocument":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ParametersFileError("The parameters file is missing.", f"{path} does not exist; run `aitk init`") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ParametersFileError("The parameters file could not be read.", f"{path}: {e}") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ParametersFileError(
                "The parameters file is not valid JSON; it was left unchanged.",
                f"{path}: line {e.lineno} column {e.colno}: {e.msg}",
            ) from None
        if not isinstance(raw, dict):
            raise ParametersFileError("The parameters file is not an ARM parameters file; it was left unchanged.",
                                      f"{path}: the top level must be a JSON object")
        try:
            _ParamsFileShape.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ParametersFileError(
                "The parameters file is not an ARM parameters file; it was left unchanged.",
                f"{path}: {where}: {first['msg']} (expected {{\"parameters\": {{\"name\": {{\"value\": ...}}}}}})",
            ) from None
        return cls(path, raw, _indent_of(text), text)

    @classmethod
    def new(cls, path: Path, values: dict[str, Any]) -> "ParametersDocument":
        raw = {"$schema": SCHEMA, "contentVersion": "1.0.0.0",
               "parameters": {k: {"value": v} for k, v in values.items()}}
        return cls(path, raw)

    @property
    def raw(self) -> dict[str, Any]:
        return copy.deepcopy(self._raw)

    def names(self) -> list[str]:
        return list(self._raw["parameters"].keys())

    def values(self) -> dict[str, Any]:
        """Every parameter's ``value`` (None for null or a Key Vault reference)."""
        return {k: (v.get("value") if isinstance(v, dict) else None) for k, v in self._raw["parameters"].items()}

    def get(self, name: str) -> Any:
        return self.values().get(name)

    # -- validation --------------------------------------------------------------
    def errors(self) -> dict[str, str]:
        """Naming-rule failures by parameter name (empty when everything is valid)."""
        out: dict[str, str] = {}
        values = self.values()
        for spec in PARAMETER_SPECS:
            if spec.name not in values:
                if not spec.nullable:
                    out[spec.name] = f"{spec.label} is required"
                continue
            value = values[spec.name]
            if value is None:
                if not spec.nullable:
                    out[spec.name] = f"{spec.label} is required"
                continue
            try:
                spec.check(value)
            except NameError_ as e:
                out[spec.name] = str(e)
        return out

    def validate(self) -> None:
        errs = self.errors()
        if errs:
            name, msg = next(iter(errs.items()))
            more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
            raise AitkError(f"Parameter {name} is not valid: {msg}{more}.",
                            "; ".join(f"{k}: {v}" for k, v in errs.items()))

    # -- editing -----------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        """Set one value after checking it (None restores the template default)."""
        spec = SPECS_BY_NAME.get(name)
        if spec is not None:
            if value is None:
                if not spec.nullable:
                    raise AitkError(f"{spec.label} cannot be empty.")
            else:
                try:
                    value = spec.check(value)
                except NameError_ as e:
                    raise AitkError(f"{e}.") from None
        params = self._raw["parameters"]
        entry = params.get(name)
        if isinstance(entry, dict):
            entry["value"] = value
        else:
            params[name] = {"value": value}

    def arm_parameters(self) -> dict[str, dict[str, Any]]:
        """What is sent to ARM: null values dropped (ARM values are not nullable)."""
        out = {}
        for k, v in self._raw["parameters"].items():
            if isinstance(v, dict) and ("reference" in v or v.get("value") is not None):
                out[k] = copy.deepcopy(v)
        return out

    def dumps(self) -> str:
        return json.dumps(self._raw, indent=self._indent, ensure_ascii=False) + "\n"

    def save(self) -> None:
        """Atomic write; refuses if the file on disk changed into something unparsable."""
        if self.path.exists():
            ParametersDocument.load(self.path)  # raises (and writes nothing) if the file is now corrupt
        atomic_write_text(self.path, self.dumps())


def parse_cli_value(name: str, text: str) -> Any:
    """Turn ``KEY=VALUE`` text from the command line into the parameter's JSON type."""
    spec = SPECS_BY_NAME.get(name)
    if text.strip().lower() == "null":
        return None
    if spec is not None and spec.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise AitkError(f"{spec.label} must be a whole number (got {text!r}).") from None
    if spec is not None and spec.kind == "list":
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise AitkError(f"{spec.label} must be a JSON list of strings, e.g. '[\"cd /mount\", \"python3 -m inference_server\"]'.") from None
        return value
    if spec is None:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text
