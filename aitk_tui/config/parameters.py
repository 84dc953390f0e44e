"""``infra/provision/inference.parameters.json``: an ARM deployment-parameters file.

Round-trip safe: unknown keys, key order, ``$schema``/``contentVersion``, the file's
indentation, line endings (LF or CRLF), encoding and byte-order mark are kept; only an
edited value changes. A file that does not parse raises :class:`ParametersFileError` and
is never written back. ``null`` values mean "the template's default" (AI Toolkit's
convention) and are dropped before the ARM call.

A parameter the ARM template does not declare is kept when the file is rewritten (AI
Toolkit's files must round-trip), but ``set`` refuses it (ARM would reject the
deployment) and :meth:`ParametersDocument.errors` reports it, with a "did you mean".
"""

from __future__ import annotations

import codecs
import copy
import difflib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AitkError
from ..fsutil import atomic_write_bytes, shown_path
from .naming import GPU_PROFILE_SIZES, PARAMETER_SPECS, SPECS_BY_NAME, NameError_, fitting_resources, resource_fit_error

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"


class ParametersFileError(AitkError):
    """The parameters file could not be read or parsed; it was left untouched."""

    config_error = True


class UnknownParameterError(AitkError):
    """A name that is neither a known parameter nor one the ARM template declares."""

    config_error = True


class ParameterValueError(AitkError):
    """A parameter's value breaks its rule (or a required one is left empty)."""

    config_error = True


# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _decode(data: bytes) -> tuple[str, str, bytes]:
    """(text, codec, byte-order mark) of a JSON file: UTF-8 unless a BOM says otherwise."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(codec), codec, bom
    return data.decode("utf-8"), "utf-8", b""


def _newline_of(text: str) -> str:
    i = text.find("\n")
    return "\r\n" if i > 0 and text[i - 1] == "\r" else "\n"


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

    def __init__(self, path: Path, raw: dict[str, Any], indent: int | str = 2, original_text: str | None = None,
                 *, codec: str = "utf-8", bom: bytes = b"", newline: str = "\n", final_newline: bool = True):
        self.path = Path(path)
        self._raw = raw
        self._indent = indent
        self._original_text = original_text
        self._codec, self._bom, self._newline, self._final_newline = codec, bom, newline, final_newline
        self._known: set[str] | None = None

    # -- reading -----------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> "ParametersDocument":
        path = Path(path)
        try:
            text, codec, bom = _decode(path.read_bytes())
        except FileNotFoundError:
            raise ParametersFileError("The parameters file is missing.", f"{path} does not exist; run `aitk init`") from None
        except IsADirectoryError:
            raise ParametersFileError(f"{shown_path(path)} is a folder, not a parameters file.", str(path)) from None
        except PermissionError as e:
            raise ParametersFileError(f"Cannot read {shown_path(path)}: permission denied.", f"{e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ParametersFileError("The parameters file could not be read.", f"{path}: {e}") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ParametersFileError(
                "The parameters file is not valid JSON; it was left unchanged.",
                f"{path}: line {e.lineno} column {e.colno}: {e.msg}",
            ) from None
        except RecursionError:
            raise ParametersFileError(
                f"{shown_path(path)} is nested too deeply to be a parameters file; it was left unchanged.",
                f"{path}: more levels of [ and {{ than Python's JSON parser follows") from None
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
        return cls(path, raw, _indent_of(text), text, codec=codec, bom=bom, newline=_newline_of(text),
                   final_newline=text.endswith(("\n", "\r")))

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

    # -- known names ---------------------------------------------------------------
    def _template_decls(self) -> dict[str, Any]:
        try:
            template = json.loads((self.path.parent / "inference.json").read_text(encoding="utf-8"))
            params = template.get("parameters") if isinstance(template, dict) else None
            return params if isinstance(params, dict) else {}
        except (OSError, ValueError, RecursionError):
            return {}

    def template_parameters(self) -> set[str]:
        """Parameters the ARM template next to this file declares (empty if there is none)."""
        return set(self._template_decls())

    def effective(self, name: str) -> Any:
        """The value a deployment would use: the file's, else the template's literal default
        (None where the default is an expression such as ``[resourceGroup().location]``)."""
        value = self.get(name)
        return value if value is not None else self.template_default(name)

    def template_default(self, name: str) -> Any:
        """The template's literal default for ``name`` (None for none, or an expression)."""
        decl = self._template_decls().get(name)
        default = decl.get("defaultValue") if isinstance(decl, dict) else None
        if isinstance(default, str) and default.startswith("[") and not default.startswith("[["):
            return None
        return default

    def resource_fit(self) -> tuple[str, str] | None:
        """(parameter, why) when containerCpu/containerMemory exceed the GPU profile's size."""
        return resource_fit_error(self.effective("gpuProfileType") or next(iter(GPU_PROFILE_SIZES)),
                                  self.effective("containerCpu"), self.effective("containerMemory"))

    def fit_resources_to_profile(self) -> dict[str, Any]:
        """Set containerCpu/containerMemory to the GPU profile's size where they exceed it
        (what choosing the T4 means); returns what changed."""
        if self.resource_fit() is None:
            return {}
        profile = str(self.effective("gpuProfileType") or next(iter(GPU_PROFILE_SIZES)))
        changed = {}
        for name, value in fitting_resources(profile).items():
            if self.effective(name) != value:
                self.set(name, value)
                changed[name] = value
        return changed

    def known_names(self) -> set[str]:
        if self._known is None:  # read once: `set` and `errors` ask for every name
            self._known = set(SPECS_BY_NAME) | self.template_parameters()
        return self._known

    def unknown_message(self, name: str) -> str:
        """'X is not a parameter of the template (did you mean Y?)' for an unknown ``name``."""
        known = sorted(self.known_names())
        by_lower = {k.lower(): k for k in known}
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
        hint = f"did you mean {by_lower[close[0]]}?" if close else "see `aitk params show` for the parameters"
        return f"{name} is not a parameter of the template ({hint})"

    def check_known(self, name: str) -> None:
        if name not in self.known_names():
            raise UnknownParameterError(self.unknown_message(name) + ".")

    # -- validation --------------------------------------------------------------
    def errors(self) -> dict[str, str]:
        """Rule failures by parameter name (empty when everything is valid): naming rules,
        and names ARM would reject because the template does not declare them."""
        out: dict[str, str] = {}
        values = self.values()
        known = self.known_names()
        for name in self.arm_parameters():  # a null unknown entry is never sent, so harmless
            if name not in known:
                out[name] = self.unknown_message(name)
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
        fit = self.resource_fit()
        if fit is not None and fit[0] not in out:
            out[fit[0]] = fit[1]
        return out

    def validate(self) -> None:
        errs = self.errors()
        if errs:
            name, msg = next(iter(errs.items()))
            more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
            raise ParameterValueError(f"Parameter {name} is not valid: {msg}{more}.",
                            "; ".join(f"{k}: {v}" for k, v in errs.items()))

    # -- editing -----------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        """Set one value after checking it (None restores the template default)."""
        self.check_known(name)
        spec = SPECS_BY_NAME.get(name)
        if spec is not None:
            if value is None:
                if not spec.nullable:
                    raise ParameterValueError(f"{spec.label} cannot be empty.")
            else:
                try:
                    value = spec.check(value)
                except NameError_ as e:
                    raise ParameterValueError(f"{e}.") from None
        params = self._raw["parameters"]
        entry = params.get(name)
        if isinstance(entry, dict):
            entry["value"] = value
        else:
            params[name] = {"value": value}

    def unset(self, name: str) -> bool:
        """Back to the template's default (null). A name the template does not declare is
        removed from the file instead; returns True when it was removed."""
        params = self._raw["parameters"]
        if name not in self.known_names():
            if name not in params:
                raise UnknownParameterError(self.unknown_message(name) + ".")
            del params[name]
            return True
        spec = SPECS_BY_NAME.get(name)
        if spec is not None and not spec.nullable:
            raise ParameterValueError(f"{name} has no template default: it needs a value.",
                            f"set one with: aitk params set {name}=VALUE")
        self.set(name, None)
        return False

    def arm_parameters(self) -> dict[str, dict[str, Any]]:
        """What is sent to ARM: null values dropped (ARM values are not nullable)."""
        out = {}
        for k, v in self._raw["parameters"].items():
            if isinstance(v, dict) and ("reference" in v or v.get("value") is not None):
                out[k] = copy.deepcopy(v)
        return out

    def dumps(self) -> str:
        """The file's text, with its own line endings (json.dumps escapes newlines inside strings)."""
        text = json.dumps(self._raw, indent=self._indent, ensure_ascii=False)
        if self._final_newline:
            text += "\n"
        return text.replace("\n", self._newline) if self._newline != "\n" else text

    def save(self) -> None:
        """Atomic write in the file's encoding; refuses if the file on disk changed into
        something unparsable. Raises ParametersFileError or FileWriteError."""
        if self.path.exists():
            ParametersDocument.load(self.path)  # raises (and writes nothing) if the file is now corrupt
        try:
            data = self._bom + self.dumps().encode(self._codec)
        except UnicodeEncodeError as e:  # a value the file's encoding cannot hold
            raise ParametersFileError(f"A value cannot be written in {shown_path(self.path)}'s encoding "
                                      f"({self._codec}).", str(e)) from None
        atomic_write_bytes(self.path, data)


def parse_cli_value(name: str, text: str) -> Any:
    """Turn ``KEY=VALUE`` text from the command line into the parameter's JSON type."""
    spec = SPECS_BY_NAME.get(name)
    if text.strip().lower() == "null":
        return None
    if spec is not None and spec.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ParameterValueError(f"{spec.label} must be a whole number (got {text!r}).") from None
    if spec is not None and spec.kind == "list":
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise ParameterValueError(f"{spec.label} must be a JSON list of strings, e.g. '[\"cd /mount\", \"python3 -m inference_server\"]'.") from None
        return value
    if spec is None:
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return text
    return text
