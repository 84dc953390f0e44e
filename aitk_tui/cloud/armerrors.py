"""ARM's nested errors: the deepest causes, the resource each concerns, and what to do.

ARM wraps the real cause in ``error.details``, two levels down, in both failure paths:

- refused at pre-flight: ``InvalidTemplateDeployment`` > ``ValidationForResourceFailed``
  (or ``...MultipleResourcesFailed``) > the provider's error, e.g.
  ``ContainerAppInvalidResourceTotal`` (Azure/bicep#14569);
- failed while running: ``DeploymentFailed`` > ``ResourceDeploymentFailure`` ("reached
  terminal provisioning state 'Failed'") > the provider's error; older ARM put the inner
  status message as a JSON *string* in a ``Conflict`` detail's message
  (Azure/reddog-containerapps#12). A failed operation's ``statusMessage.error`` has the
  same chain.

:func:`causes` walks any of these (SDK models, azure-core's ``ODataV4Format`` or plain
JSON) down to the leaves; :func:`explain` turns them into one or two sentences plus a
hint where one is known. No SDK imports: it reads shapes, not types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..config.naming import GPU_PROFILE_SIZES

# Codes that only say "look inside": never the cause when something lies beneath them.
WRAPPERS = frozenset(c.lower() for c in (
    "InvalidTemplateDeployment", "ValidationForResourceFailed", "ValidationForMultipleResourcesFailed",
    "DeploymentFailed", "ResourceDeploymentFailure", "MultipleErrorsOccurred", "Conflict", "BadRequest",
    "InvalidTemplate", "DeploymentOperationFailed",
))
_MAX_DEPTH = 12
_MAX_MESSAGE = 400


@dataclass(frozen=True)
class Cause:
    """One deepest error: its code and message, and the resource it concerns where known."""

    code: str | None
    message: str
    target: str | None = None  # a resource id, a name, or a provider namespace

    @property
    def resource(self) -> str | None:
        """``Microsoft.App/containerApps 'app'`` for a resource id; the target as it is otherwise
        (a provider namespace is not a resource: the message names it)."""
        if not self.target or (self.target.lower().startswith("microsoft.") and "/" not in self.target):
            return None
        return resource_label(self.target)

    def sentence(self, with_resource: bool = True) -> str:
        where = f"{self.resource}: " if self.resource and with_resource else ""
        code = f"{self.code}: " if self.code else ""
        text = _first_sentences(self.message)
        return f"{where}{code}{text}"


def resource_label(target: str) -> str:
    """'/subscriptions/../providers/Microsoft.App/containerApps/x' -> "Microsoft.App/containerApps 'x'"."""
    parts = [p for p in str(target).split("/") if p]
    low = [p.lower() for p in parts]
    if "providers" not in low:
        return str(target)
    i = len(low) - 1 - low[::-1].index("providers")
    rest = parts[i + 1:]
    if len(rest) < 3:
        return str(target)
    namespace, pairs = rest[0], rest[1:]
    types, names = pairs[0::2], pairs[1::2]
    if not names:
        return str(target)
    return f"{namespace}/{'/'.join(types)} '{'/'.join(names)}'"


def first_line(text: Any) -> str:
    return _first_sentences(str(text or ""), 300)


def _first_sentences(text: str, limit: int = _MAX_MESSAGE) -> str:
    one = " ".join(ln.strip() for ln in str(text or "").splitlines() if ln.strip())
    if len(one) > limit:
        one = one[:limit].rsplit(" ", 1)[0] + "…"
    return one


def field_of(node: Any, name: str) -> Any:
    if node is None:
        return None
    if isinstance(node, dict):
        if name in node:
            return node[name]
        return next((v for k, v in node.items() if k.lower() == name.lower()), None)
    value = getattr(node, name, None)
    if callable(value):
        value = None
    if value is None and hasattr(node, "get"):
        try:
            value = node.get(name)
        except Exception:  # noqa: BLE001 - a mapping that refuses the key: absent
            value = None
    return value


def _as_json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        return None
    try:
        return json.loads(s)
    except ValueError:
        return None


def error_of(node: Any) -> Any:
    """The error object inside ``{"error": {...}}`` (a response body or a statusMessage), or ``node``."""
    if isinstance(node, str):
        parsed = _as_json(node)
        node = parsed if parsed is not None else {"message": node}
    inner = field_of(node, "error")
    return inner if inner is not None and not isinstance(inner, str) else node


def causes(error: Any) -> list[Cause]:
    """The deepest causes under ``error`` (an error object, a body with ``error``, or a
    statusMessage), each with the nearest resource named on the way down. Never empty
    when ``error`` has a code or a message."""
    out: list[Cause] = []
    _walk(error_of(error), None, out, 0)
    seen: set[tuple] = set()
    unique = []
    for c in out:
        key = (c.code, c.message, c.target)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def _walk(node: Any, target: str | None, out: list[Cause], depth: int) -> None:
    if node is None or depth > _MAX_DEPTH:
        return
    code = field_of(node, "code")
    message = field_of(node, "message")
    target = field_of(node, "target") or target
    code = str(code) if code else None
    details = [d for d in (field_of(node, "details") or []) if d is not None]
    inner = _as_json(message)
    if inner is not None:  # an older ARM shape: the inner statusMessage as a JSON string
        _walk(error_of(inner), target, out, depth + 1)
        return
    if details:
        before = len(out)
        for d in details:
            _walk(d, target, out, depth + 1)
        if len(out) > before:
            return
    if code or message:
        out.append(Cause(code, str(message or ""), target))


def chain(error: Any) -> str:
    """The codes from the top to the first deepest cause: 'InvalidTemplateDeployment >
    ValidationForResourceFailed > ContainerAppInvalidResourceTotal'."""
    codes: list[str] = []
    node = error_of(error)
    for _ in range(_MAX_DEPTH):
        if node is None:
            break
        code = field_of(node, "code")
        if code:
            codes.append(str(code))
        inner = _as_json(field_of(node, "message"))
        details = field_of(node, "details") or []
        node = error_of(inner) if inner is not None else (details[0] if details else None)
    return " > ".join(codes)


# -- hints -----------------------------------------------------------------------------------
def _sizes() -> str:
    return "; ".join(f"{p} offers {cpu} vCPU and {mem} GiB" for p, (cpu, mem) in GPU_PROFILE_SIZES.items())


def hint(cause: Cause) -> str | None:
    """What to do about one cause, where aitk knows."""
    code = (cause.code or "").lower()
    text = cause.message.lower()
    if code == "containerappinvalidresourcetotal" or ("cpu" in text and "memory" in text and "invalid" in text):
        return (f"The container's CPU and memory must fit the GPU profile ({_sizes()}): set containerCpu and "
                "containerMemory, e.g. `aitk params set containerCpu=8 containerMemory=56Gi` for the T4.")
    if "quota" in code or "quota" in text or code in ("subscriptionisoverquotaforsku", "regionclosedforsubscription"):
        return ("Request serverless GPU quota for this region in the Azure portal (Quotas > Azure Container "
                "Apps, or a support request of type 'Service and subscription limits (quotas)'), or choose "
                "another region (`aitk params set location=...`).")
    if code == "missingsubscriptionregistration":
        ns = cause.target if cause.target and "/" not in cause.target else _namespace_in(cause.message)
        return (f"Register the resource provider once per subscription: `az provider register --namespace "
                f"{ns or 'Microsoft.App'} --wait` (needs Contributor on the subscription).")
    if code == "noregisteredproviderfound":
        return ("This cloud does not serve the api-version aitk or the template uses for that resource type; "
                "update aitk, or set the template's apiVersion to one of the supported versions listed above.")
    if code == "workloadprofiletypecannotbechanged" or ("workload profile" in text and "cannot be changed" in text):
        return ("A GPU profile is set only when the environment is created: give acaEnvironmentName a new "
                "name (`aitk params set acaEnvironmentName=...`), or delete the old one first with "
                "`aitk down --all`.")
    return None


def _namespace_in(message: str) -> str | None:
    for word in message.replace("'", " ").replace('"', " ").split():
        if word.lower().startswith("microsoft.") and "/" not in word:
            return word.rstrip(".,")
    return None


# A provider's error code says which kind of resource it concerns when ARM names none.
_CODE_PREFIX_TYPES = (("containerapp", "Microsoft.App/containerApps"),
                      ("managedenvironment", "Microsoft.App/managedEnvironments"),
                      ("workloadprofile", "Microsoft.App/managedEnvironments"),
                      ("storageaccount", "Microsoft.Storage/storageAccounts"))


def _guess_resource(code: str | None, names: dict[str, str] | None) -> str | None:
    low = (code or "").lower()
    for prefix, rtype in _CODE_PREFIX_TYPES:
        if low.startswith(prefix):
            name = (names or {}).get(rtype)
            return f"{rtype} '{name}'" if name else rtype
    return None


def causes_text(error: Any) -> str | None:
    """The deepest causes as 'Code: message' (no resource: for a row that already names it)."""
    found = causes(error)
    return " ".join(_end(c.sentence(with_resource=False)) for c in found[:2]).rstrip(".") if found else None


def explain(error: Any, *, resource: str | None = None,
            names: dict[str, str] | None = None) -> tuple[str, str | None, list[Cause]]:
    """(sentence, hint, causes) for ``error``. ``resource`` names the resource when the
    error itself does not (a failed deployment operation knows its target); else ``names``
    (resource type -> name) lets a code such as ``ContainerApp...`` name its resource."""
    found = causes(error)
    if not found:
        return "no error message", None, []
    found = [c if c.target else Cause(c.code, c.message, resource or _guess_resource(c.code, names))
             for c in found]
    shown = found[:2]
    text = " ".join(_end(c.sentence()) for c in shown)
    if len(found) > len(shown):
        text += f" (and {len(found) - len(shown)} more)"
    hints = list(dict.fromkeys(h for h in (hint(c) for c in found) if h))
    return text, (" ".join(hints) or None), found


def _end(text: str) -> str:
    return text if text.endswith((".", "!", "?", "…", ")")) else text + "."


def is_wrapped(error: Any) -> bool:
    """True when the top code only says "see inner errors" and something lies beneath."""
    top = error_of(error)
    code = str(field_of(top, "code") or "").lower()
    return code in WRAPPERS and bool(field_of(top, "details") or _as_json(field_of(top, "message")))
