"""``aitk params show | set KEY=VALUE ... | unset KEY ... | validate`` (no cloud access,
no SDK imports).

``set`` and ``unset`` check every name and value before writing anything, then save once
(atomically); a corrupt parameters file is reported and left byte-for-byte unchanged. A
name the template does not declare is refused with a "did you mean" (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._output import EXIT_OK, UsageError

if TYPE_CHECKING:
    from ..config.parameters import ParametersDocument
    from ..project import Project


def add_parser(name: str, p: argparse.ArgumentParser, cmd: Callable[..., argparse.ArgumentParser]) -> None:
    psub = p.add_subparsers(dest="params_command", metavar="ACTION")
    c = cmd("show", "show the parameters", psub)
    c.add_argument("--json", action="store_true")
    c = cmd("set", "set parameters: KEY=VALUE ... (null restores the template default)", psub)
    c.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    c = cmd("unset", "put parameters back to the template default (null); removes a name the template does not have",
            psub)
    c.add_argument("names", nargs="+", metavar="KEY")
    cmd("validate", "check every parameter against Azure's naming rules", psub)


def _fit_resources(doc: "ParametersDocument", keys: set[str]) -> dict[str, object]:
    """Choosing a smaller GPU profile brings the container's CPU/memory down to fit it,
    unless this same command sets them; a size given here that does not fit is refused."""
    resources = {"containerCpu", "containerMemory"}
    if "gpuProfileType" in keys and not keys & resources:
        return doc.fit_resources_to_profile()
    fit = doc.resource_fit()
    if fit is not None and keys & (resources | {"gpuProfileType"}):
        raise UsageError(f"{fit[0]}: {fit[1]}; nothing was written.",
                         "Azure refuses a container larger than its GPU profile (ContainerAppInvalidResourceTotal)")
    return {}


def _fmt(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def run(project: "Project", args: argparse.Namespace) -> int:
    from ..config.naming import PARAMETER_SPECS, SPECS_BY_NAME
    from ..config.parameters import ParametersDocument, parse_cli_value

    action = args.params_command or "show"
    doc = ParametersDocument.load(project.parameters_path)
    if action == "show":
        values = doc.values()
        if getattr(args, "json", False):
            print(json.dumps(values, indent=2))
            return EXIT_OK
        names = list(values) + [s.name for s in PARAMETER_SPECS if s.name not in values]
        width = max(len(n) for n in names)
        errors = doc.errors()
        for name in names:
            spec = SPECS_BY_NAME.get(name)
            value = values.get(name)
            shown = _fmt(value) if name in values else "(not in file)"
            if value is None and spec is not None and spec.default_hint:
                shown += f"  -> {spec.default_hint}"
            flag = f"  !! {errors[name]}" if name in errors else ""
            print(f"{name:<{width}}  {shown}{flag}")
        return EXIT_OK
    if action == "set":
        changes = []
        for item in args.assignments:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise UsageError(f"'{item}' is not KEY=VALUE.", "for example: aitk params set location=westus3")
            if key == "inferenceApiKey":
                raise UsageError("The API key is not a parameter you set here.",
                                 "aitk keeps it as a container-app secret; it never goes in the parameters file")
            doc.check_known(key)  # before parsing: a typo gets "did you mean", not a type error
            value = parse_cli_value(key, text)
            doc.set(key, value)
            changes.append((key, value))
        fitted = _fit_resources(doc, {key for key, _ in changes})
        doc.save()  # a file that cannot be written: exit 1, the file is as it was
        for key, value in changes:
            note = " (template default)" if value is None else ""
            print(f"{key} = {_fmt(value)}{note}")
        for key, value in fitted.items():
            print(f"{key} = {_fmt(value)} (to fit {doc.effective('gpuProfileType')})")
        return EXIT_OK
    if action == "unset":
        lines = []
        for key in args.names:
            removed = doc.unset(key)
            lines.append(f"removed {key} (not a parameter of the template)" if removed
                         else f"{key} = null (template default)")
        doc.save()
        print("\n".join(lines))
        return EXIT_OK
    # validate
    errors = doc.errors()
    if not errors:
        print(f"All {len(doc.values())} parameters are valid.")
        return EXIT_OK
    for name, message in errors.items():
        print(f"{name}: {message}")
    first = next(iter(errors))
    more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
    print(f"aitk: error: {len(errors)} parameter(s) are not valid: {first}{more} (see above)", file=sys.stderr)
    return 2
