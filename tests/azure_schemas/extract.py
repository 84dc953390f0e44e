"""Extract the JSON schemas of the operations the headless journey uses from Microsoft's
published resource types, into small fixtures beside this file (run once; the fixtures are
committed, and each names its source repository, path, commit and api-version).

Source: ``Azure/bicep-types-az`` (``generated/<rp>/<namespace>/<version>/types.json``), which
Microsoft generates from ``Azure/azure-rest-api-specs`` and which keeps each property's
required, read-only and write-only flags. Only the types reachable from the resource bodies
and list actions named in :data:`WANTED` are written, resolved to plain JSON Schema (draft
2020-12, ``$defs`` and local ``$ref`` only):

- ``request``: what a client may send (read-only properties tolerated, as ARM ignores them).
- ``response``: what Azure answers. Write-only properties (secrets' values...) must not come
  back; an object accepts only the properties the spec names (the test allows, by name, the
  few that Azure is known to send beyond its specs); optional values may be null, as ARM's are.

    python tests/azure_schemas/extract.py /path/to/bicep-types-az   # a git checkout
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# (fixture name, types.json path, resource type or "type:function", the operations it covers, whether
# the journey sends a body: the container app is created by the deployment's template, never PUT directly)
WANTED = [
    ("containerApps", "generated/app_0/microsoft.app/2026-01-01/types.json", "Microsoft.App/containerApps",
     "ContainerApps_Get", False),
    ("containerApps.revisions", "generated/app_0/microsoft.app/2026-01-01/types.json",
     "Microsoft.App/containerApps/revisions", "ContainerAppsRevisions_GetRevision, _ListRevisions", False),
    ("containerApps.revisions.replicas", "generated/app_0/microsoft.app/2026-01-01/types.json",
     "Microsoft.App/containerApps/revisions/replicas", "ContainerAppsRevisionReplicas_GetReplica, _ListReplicas",
     False),
    ("managedEnvironments", "generated/app_0/microsoft.app/2026-01-01/types.json",
     "Microsoft.App/managedEnvironments", "ManagedEnvironments_Get, _ListByResourceGroup", False),
    ("containerApps.listSecrets", "generated/app_0/microsoft.app/2026-01-01/types.json",
     "Microsoft.App/containerApps:listSecrets", "ContainerApps_ListSecrets", False),
    ("containerApps.getAuthToken", "generated/app_0/microsoft.app/2026-01-01/types.json",
     "Microsoft.App/containerApps:getAuthtoken", "ContainerApps_GetAuthToken", False),
    ("resourceGroups", "generated/resources_11/microsoft.resources/2025-04-01/types.json",
     "Microsoft.Resources/resourceGroups", "ResourceGroups_Get, ResourceGroups_CreateOrUpdate", True),
    ("deployments", "generated/resources_7/microsoft.resources/2025-04-01/types.json",
     "Microsoft.Resources/deployments", "Deployments_Get, Deployments_CreateOrUpdate, _ListByResourceGroup", True),
    ("storageAccounts.listKeys", "generated/storage/microsoft.storage/2026-04-01/types.json",
     "Microsoft.Storage/storageAccounts:listKeys", "StorageAccounts_ListKeys", False),
]

REQUIRED, READ_ONLY, WRITE_ONLY = 1, 2, 4


class Converter:
    def __init__(self, types: list[dict[str, Any]], flavor: str) -> None:
        self.types, self.flavor, self.defs = types, flavor, {}

    def ref(self, ref: dict[str, str]) -> dict[str, Any]:
        index = int(ref["$ref"].rsplit("/", 1)[1])
        t = self.types[index]
        kind = t["$type"]
        # Scalars inline; objects, arrays and unions as $defs (they may recurse).
        if kind == "StringType":
            return _drop_none({"type": "string", "minLength": t.get("minLength"), "maxLength": t.get("maxLength"),
                               "pattern": t.get("pattern")})
        if kind == "IntegerType":
            return _drop_none({"type": "integer", "minimum": t.get("minValue"), "maximum": t.get("maxValue")})
        if kind == "BooleanType":
            return {"type": "boolean"}
        if kind == "AnyType":
            return {}
        if kind == "StringLiteralType":
            return {"const": t["value"]}
        key = f"t{index}"
        if key not in self.defs:
            self.defs[key] = {}  # placeholder: a recursive reference finds it
            self.defs[key] = self.convert(t)
        return {"$ref": f"#/$defs/{key}"}

    def convert(self, t: dict[str, Any]) -> dict[str, Any]:
        kind = t["$type"]
        if kind == "ArrayType":
            return _drop_none({"type": "array", "items": self.ref(t["itemType"]), "minItems": t.get("minLength"),
                               "maxItems": t.get("maxLength")})
        if kind == "UnionType":
            return {"anyOf": [self.ref(e) for e in t["elements"]]}
        if kind == "ObjectType":
            return self.object(t.get("properties") or {}, t.get("additionalProperties"))
        if kind == "DiscriminatedObjectType":
            base = t.get("baseProperties") or {}
            return {"anyOf": [self.object({**base, **(self.types[int(e["$ref"].rsplit("/", 1)[1])].get("properties")
                                                     or {})}, None)
                              for e in (t.get("elements") or {}).values()]}
        raise ValueError(f"unexpected type {kind}")

    def object(self, props: dict[str, Any], additional: Any, root: bool = False) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, prop in props.items():
            flags = int(prop.get("flags", 0))
            if root and name == "apiVersion":
                continue  # bicep's own; never in a REST body
            if self.flavor == "response" and flags & WRITE_ONLY and not flags & READ_ONLY:
                properties[name] = False  # a write-only value (a secret) must never come back
                continue
            schema = self.ref(prop["type"])
            is_required = bool(flags & REQUIRED) and not (root and name == "name")  # the name is in the URL
            if self.flavor == "request" and flags & READ_ONLY:
                is_required = False
            if is_required:
                required.append(name)
            else:
                schema = {"anyOf": [{"type": "null"}, schema]}  # ARM answers null for what is not set
            properties[name] = schema
        out: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            out["required"] = sorted(required)
        out["additionalProperties"] = self.ref(additional) if additional else False
        return out


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def schema_for(types: list[dict[str, Any]], target: str, flavor: str) -> dict[str, Any]:
    conv = Converter(types, flavor)
    if ":" in target:
        rtype, function = target.split(":")
        fn = next(t for t in types if t["$type"] == "ResourceFunctionType" and t["name"] == function
                  and t["resourceType"].lower() == rtype.lower())
        root = conv.ref(fn["output"])
    else:
        res = next(t for t in types if t["$type"] == "ResourceType" and t["name"].split("@")[0].lower() == target.lower())
        body = types[int(res["body"]["$ref"].rsplit("/", 1)[1])]
        root = conv.object(body.get("properties") or {}, body.get("additionalProperties"), root=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": conv.defs}


# Where an operation's answer is another model than its resource body (bicep-types-az keeps the
# PUT model), the answer's model from the REST spec, by property path (response flavour only).
RESPONSE_MODELS = {
    # Deployments_Get answers DeploymentExtended, whose properties.parameters is any value (ARM
    # sends ``{"name": {"type": "String", "value": ...}}``), not the request's DeploymentParameter:
    # azure-rest-api-specs@0be45ed9616c118bd181229fdfeafba56c327c72, specification/resources/
    # resource-manager/Microsoft.Resources/deployments/stable/2025-04-01/deployments.json,
    # definition DeploymentPropertiesExtended ("parameters": {"description": ..., "readOnly": true}).
    "deployments": {("properties", "parameters"): {"anyOf": [{"type": "null"}, {"type": "object"}]}},
}


def _override(schema: dict[str, Any], path: tuple[str, ...], replacement: dict[str, Any]) -> None:
    node = schema
    for i, key in enumerate(path):
        for _ in range(3):  # follow a null-or-$ref wrapper down to the object
            if "$ref" in node:
                node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
            elif "anyOf" in node:
                node = next(n for n in node["anyOf"] if n.get("type") != "null")
        if i == len(path) - 1:
            node["properties"][key] = replacement
        else:
            node = node["properties"][key]


def main(repo: str) -> None:
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    for name, path, target, operations, request in WANTED:
        types = json.loads(subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], capture_output=True,
                                          check=True).stdout)
        version = path.split("/")[-2]
        fixture = {
            "source": {"repository": "Azure/bicep-types-az", "path": path, "commit": commit, "api-version": version,
                       "generated from": "Azure/azure-rest-api-specs (bicep-types-az is generated from it)",
                       "extracted by": "tests/azure_schemas/extract.py"},
            "target": target, "operations": operations,
            "request": schema_for(types, target, "request") if ":" not in target and request else None,
            "response": schema_for(types, target, "response"),
        }
        for path_, model in RESPONSE_MODELS.get(name, {}).items():
            _override(fixture["response"], path_, model)
            fixture["source"]["response overrides"] = "see RESPONSE_MODELS in extract.py"
        out = HERE / f"{name}.{version}.json"
        out.write_text(json.dumps(fixture, indent=1, sort_keys=False) + "\n")
        print(f"{out.name}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
