"""Check a recording of the local cloud's ARM traffic (``AITK_LOCAL_RECORD``, see
``aitk_tui/local/recorder.py``) against the JSON schemas of Azure's published operations
(``tests/azure_schemas/``, each fixture naming its source, api-version and commit).

Every exchange is matched to its operation by method and path. A JSON request body is
validated against the operation's request schema; a 2xx JSON answer against its response
schema; an error answer against ARM's common ``ErrorResponse``. An exchange of an operation
with no schema here is reported by :func:`check` under ``unvalidated``, so the test names
every one it does not cover, and a new operation cannot slip by unseen.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parent / "azure_schemas"

_SUB = r"/subscriptions/[^/]+"
_RG = _SUB + r"/resourcegroups/[^/]+"

# (operation, method, path regex (lower-cased path), fixture, request part, response part)
OPERATIONS: list[tuple[str, str, str, str | None, str | None, str | None]] = [
    ("ResourceGroups_CreateOrUpdate", "PUT", _RG + r"$", "resourceGroups.2025-04-01", "request", "response"),
    ("ResourceGroups_Get", "GET", _RG + r"$", "resourceGroups.2025-04-01", None, "response"),
    ("Providers_Get", "GET", _SUB + r"/providers/[^/]+$", "providers.2025-04-01", None, "response"),
    ("Providers_Register", "POST", _SUB + r"/providers/[^/]+/register$", "providers.2025-04-01", "request",
     "response"),
    ("Deployments_CreateOrUpdate", "PUT", _RG + r"/providers/microsoft.resources/deployments/[^/]+$",
     "deployments.2025-04-01", "request", "response"),
    ("Deployments_Get", "GET", _RG + r"/providers/microsoft.resources/deployments/[^/]+$",
     "deployments.2025-04-01", None, "response"),
    ("Deployments_ListByResourceGroup", "GET", _RG + r"/providers/microsoft.resources/deployments$",
     "deployments.2025-04-01", None, "list:response"),
    ("DeploymentOperations_List", "GET", _RG + r"/(providers/microsoft.resources/)?deployments/[^/]+/operations$",
     "deploymentOperations.2025-04-01", None, "response"),
    ("Deployments (operation status)", "GET",
     _RG + r"/providers/microsoft.resources/deployments/[^/]+/operationstatuses/[^/]+$",
     "common-types.v5", None, "operationStatus"),
    ("ContainerApps_Get", "GET", _RG + r"/providers/microsoft.app/containerapps/[^/]+$",
     "containerApps.2026-01-01", None, "response"),
    ("ContainerApps_ListSecrets", "POST", _RG + r"/providers/microsoft.app/containerapps/[^/]+/listsecrets$",
     "containerApps.listSecrets.2026-01-01", None, "response"),
    ("ManagedEnvironments_Get", "GET", _RG + r"/providers/microsoft.app/managedenvironments/[^/]+$",
     "managedEnvironments.2026-01-01", None, "response"),
    ("ManagedEnvironments_ListByResourceGroup", "GET", _RG + r"/providers/microsoft.app/managedenvironments$",
     "managedEnvironments.2026-01-01", None, "list:response"),
    ("Usages_List", "GET", _SUB + r"/providers/microsoft.app/locations/[^/]+/usages$", "usages.2026-01-01", None,
     "response"),
    ("AvailableWorkloadProfiles_Get", "GET",
     _SUB + r"/providers/microsoft.app/locations/[^/]+/availablemanagedenvironmentsworkloadprofiletypes$",
     "availableWorkloadProfiles.2026-01-01", None, "response"),
    ("ContainerAppsRevisions_ListRevisions", "GET", _RG + r"/providers/microsoft.app/containerapps/[^/]+/revisions$",
     "containerApps.revisions.2026-01-01", None, "list:response"),
    ("ContainerAppsRevisions_GetRevision", "GET",
     _RG + r"/providers/microsoft.app/containerapps/[^/]+/revisions/[^/]+$",
     "containerApps.revisions.2026-01-01", None, "response"),
    ("ContainerAppsRevisionReplicas_ListReplicas", "GET",
     _RG + r"/providers/microsoft.app/containerapps/[^/]+/revisions/[^/]+/replicas$",
     "containerApps.revisions.replicas.2026-01-01", None, "list:response"),
    ("ContainerAppsRevisions_RestartRevision", "POST",
     _RG + r"/providers/microsoft.app/containerapps/[^/]+/revisions/[^/]+/restart$", None, None, None),
    ("StorageAccounts_ListKeys", "POST", _RG + r"/providers/microsoft.storage/storageaccounts/[^/]+/listkeys$",
     "storageAccounts.listKeys.2026-04-01", None, "response"),
    ("Subscriptions_List", "GET", r"/subscriptions$", "subscriptions.2022-12-01", None, "response"),
    ("ContainerApps_GetAuthToken", "POST", _RG + r"/providers/microsoft.app/containerapps/[^/]+/getauthtoken$",
     "containerApps.getAuthToken.2026-01-01", None, "response"),


]

#: Where Azure's real answers differ from its own specs, so the local cloud answers as Azure does:
#: (operation, path of the value in the body, the value Azure sends, where that is shown).
#: A ``property:NAME`` value allows that property where the spec names no such property.
AZURE_NOT_SPEC: list[tuple[str, str, Any, str]] = [
    ("StorageAccounts_ListKeys", r"keys/\d+/permissions", "FULL",
     "the spec's KeyPermission enum (modelAsString false) says Read/Full; the service answers FULL "
     "(turbot/steampipe-plugin-azure#730 prints a real listKeys answer)"),
    ("Subscriptions_List", r"", "property:count",
     'ARM answers {"value": [...], "count": {"type": "Total", "value": N}}, which SubscriptionListResult does '
     "not list (a real curl of GET /subscriptions in a public Holiday Hack 2023 write-up, and a Rust client's "
     "test fixture of a real answer, both in the search tool's code corpus)"),
    ("ContainerAppsRevisions_*", r"(value/\d+/)?properties", "property:runningStateDetails",
     "a failed revision's own why, e.g. 'Deployment Progress Deadline Exceeded. 0/2 replicas ready.'; "
     "the spec lists runningStateDetails on replicas and containers only (Azure/azure-rest-api-specs#29102; "
     "aitk_tui/cloud/revision_state.py)"),
]


@dataclass
class Report:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    unvalidated: set[str] = field(default_factory=set)  # operations seen with no schema here
    unknown: list[str] = field(default_factory=list)  # exchanges of no operation in the table
    operations: set[str] = field(default_factory=set)


@cache
def fixture(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


@cache
def validator(name: str, part: str) -> Any:
    from jsonschema import Draft202012Validator

    if part.startswith("list:"):  # a collection answer: {"value": [item...], "nextLink": ...}
        item = dict(fixture(name)[part[5:]])
        defs = item.pop("$defs")
        item.pop("$schema", None)
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["value"],
                  "properties": {"value": {"type": "array", "items": {"$ref": "#/$defs/item"}},
                                 "nextLink": {"type": ["string", "null"]}},
                  "additionalProperties": False, "$defs": {**defs, "item": item}}
    else:
        schema = fixture(name)[part]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def operation_of(method: str, path: str) -> tuple[str, str | None, str | None, str | None] | None:
    low = path.lower().rstrip("/")
    for name, m, pattern, fx, req, res in OPERATIONS:
        if m == method and re.fullmatch(pattern, low):
            return name, fx, req, res
    return None


def _leaves(error: Any) -> list[Any]:
    """The innermost errors (an anyOf's reasons), where the cause is named."""
    if not error.context:
        return [error]
    # An anyOf's branch of another type (null, or an object where a string was) says nothing.
    context = ([c for c in error.context if c.validator != "type"]
               or [c for c in error.context if c.validator_value != "null"] or list(error.context))
    deepest = max(len(c.absolute_path) for c in context)
    return [leaf for c in context if len(c.absolute_path) == deepest for leaf in _leaves(c)]


def _known(operation: str, leaf: Any) -> bool:
    where = "/".join(map(str, leaf.absolute_path))
    rules = [(path, known) for op, path, known, _ in AZURE_NOT_SPEC
             if op == operation or (op.endswith("*") and operation.startswith(op[:-1]))]
    if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
        extra = set(leaf.instance) - set(leaf.schema.get("properties") or {})
        allowed = {known[9:] for path, known in rules
                   if isinstance(known, str) and known.startswith("property:") and re.fullmatch(path, where)}
        return bool(extra) and extra <= allowed
    return any(re.fullmatch(path, where) and leaf.instance == known for path, known in rules)


def _words(e: Any) -> str:
    """What failed, without echoing the value (a body may hold keys and secrets)."""
    if e.validator in ("additionalProperties", "required"):
        return e.message[:200]  # names the property, not a value
    if e.schema is False:
        return "must not be answered (write-only in the spec)"
    return f"fails {e.validator} {json.dumps(e.validator_value)[:120]}"


def _errors(operation: str, name: str, part: str, body: Any) -> list[str]:
    out = []
    for error in validator(name, part).iter_errors(body):
        for leaf in (leaf for leaf in _leaves(error) if not _known(operation, leaf)):
            out.append(f"{'/'.join(map(str, leaf.absolute_path)) or '(body)'}: {_words(leaf)}")
    return sorted(set(out))[:8]


def check_exchange(ex: dict[str, Any], report: Report) -> None:
    op = operation_of(ex["method"], ex["path"])
    where = f"{ex['method']} {ex['path']} -> {ex['status']}"
    if op is None:
        report.unknown.append(where)
        return
    name, fx, req_part, res_part = op
    report.operations.add(name)
    status = int(ex["status"])
    if status >= 400:
        body = ex.get("response")
        if body is not None:
            report.checked += 1
            report.problems += [f"{where} (error body): {e}" for e in _errors(name, "common-types.v5", "error", body)]
        return
    if fx is None:
        if ex.get("response") is not None or ex.get("request") is not None:
            report.unvalidated.add(name)
        return
    if req_part and ex.get("request") is not None:
        report.checked += 1
        report.problems += [f"{where} (request): {e}" for e in _errors(name, fx, req_part, ex["request"])]
    if res_part and ex.get("response") is not None and status != 204:
        report.checked += 1
        report.problems += [f"{where} (response): {e}" for e in _errors(name, fx, res_part, ex["response"])]


def check(path: Path) -> Report:
    report = Report()
    for line in Path(path).read_text().splitlines():
        if line.strip():
            check_exchange(json.loads(line), report)
    return report
