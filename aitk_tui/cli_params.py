"""``aitk params show | set KEY=VALUE ... | validate`` (no cloud access, no SDK imports).

``set`` checks every assignment before writing anything, then saves once (atomically);
a corrupt parameters file is reported and left byte-for-byte unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys

from .cli import EXIT_OK, UsageError
from .config.naming import PARAMETER_SPECS, SPECS_BY_NAME
from .config.parameters import ParametersDocument, parse_cli_value
from .errors import AitkError
from .project import Project


def _load(project: Project) -> ParametersDocument:
    try:
        return ParametersDocument.load(project.parameters_path)
    except AitkError as e:
        raise UsageError(e.message, e.detail) from None


def _fmt(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def run(project: Project, args: argparse.Namespace) -> int:
    action = args.params_command or "show"
    doc = _load(project)
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
            try:
                value = parse_cli_value(key, text)
                doc.set(key, value)
            except AitkError as e:
                raise UsageError(e.message, e.detail) from None
            changes.append((key, value))
        try:
            doc.save()
        except AitkError as e:
            raise UsageError(e.message, e.detail) from None
        for key, value in changes:
            note = " (template default)" if value is None else ""
            print(f"{key} = {_fmt(value)}{note}")
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
