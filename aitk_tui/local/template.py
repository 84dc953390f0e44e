"""ARM template expressions: a small tokenizer, parser and evaluator.

Strings of the form ``[expr]`` are expressions (``[[`` escapes a literal ``[``). The
grammar covers what compiled bicep emits: calls with nested calls, string literals with
``''`` escaping, numbers, ``true``/``false``/``null``, property access ``.name`` and
indexing ``[0]`` / ``['key']``. Functions: parameters, variables, format, concat, join,
substring, uniqueString, guid, resourceGroup, subscription, deployment, resourceId,
subscriptionResourceId, reference, listKeys, plus the usual string/logic/array helpers.

``reference``/``listKeys`` are answered by callbacks (the cloud's stored resources). When
they raise :class:`Unresolved` (a resource that does not exist yet, during what-if) and the
evaluation is lenient, the expression string is kept as it is, as Azure's what-if shows it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class TemplateError(Exception):
    def __init__(self, message: str, code: str = "InvalidTemplate") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Unresolved(Exception):
    """reference()/listKeys() of a resource that does not exist (yet)."""


# -- tokenizer ----------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<punct>[(),.\[\]]))")


def tokenize(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise TemplateError(f"Unexpected character {text[pos:].strip()[:1]!r} in expression [{text}]")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("str", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("num") is not None:
            n = m.group("num")
            out.append(("num", float(n) if "." in n else int(n)))
        elif m.group("id") is not None:
            out.append(("id", m.group("id")))
        else:
            out.append((m.group("punct"), None))
    return out


# -- parser: AST nodes are tuples -----------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def take(self, kind: str) -> Any:
        if self.peek() != kind:
            raise TemplateError(f"Expected {kind!r} at token {self.i + 1} of expression [{self.text}]")
        tok = self.toks[self.i]
        self.i += 1
        return tok[1]

    def parse(self) -> tuple:
        node = self.expr()
        if self.i != len(self.toks):
            raise TemplateError(f"Unexpected {self.peek()!r} in expression [{self.text}]")
        return node

    def expr(self) -> tuple:
        kind = self.peek()
        if kind == "str":
            node: tuple = ("lit", self.take("str"))
        elif kind == "num":
            node = ("lit", self.take("num"))
        elif kind == "id":
            name = self.take("id")
            if self.peek() == "(":
                self.take("(")
                args = []
                if self.peek() != ")":
                    args.append(self.expr())
                    while self.peek() == ",":
                        self.take(",")
                        args.append(self.expr())
                self.take(")")
                node = ("call", name, args)
            elif name.lower() in ("true", "false", "null"):
                node = ("lit", {"true": True, "false": False, "null": None}[name.lower()])
            else:
                raise TemplateError(f"{name!r} is not a function call in expression [{self.text}]")
        else:
            raise TemplateError(f"Unexpected {kind!r} in expression [{self.text}]")
        while self.peek() in (".", "["):
            if self.take_if("."):
                node = ("prop", node, self.take("id"))
            else:
                self.take("[")
                node = ("index", node, self.expr())
                self.take("]")
        return node

    def take_if(self, kind: str) -> bool:
        if self.peek() == kind:
            self.i += 1
            return True
        return False


def parse(text: str) -> tuple:
    return _Parser(text).parse()


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("[") and value.endswith("]") and not value.startswith("[[")


# -- helpers --------------------------------------------------------------------------------
_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def unique_string(*parts: str) -> str:
    """Deterministic 13-character base-32 hash of the arguments (like Azure's uniqueString)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    n = int.from_bytes(digest[:8], "big")
    return "".join(_B32[(n >> (5 * i)) & 31] for i in range(12, -1, -1))


def _get_prop(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        for k, v in obj.items():
            if k.lower() == name.lower():
                return v
        raise TemplateError(f"The language expression property '{name}' doesn't exist, available properties are "
                            f"'{', '.join(obj)}'.")
    raise TemplateError(f"The language expression property '{name}' can't be evaluated on a {type(obj).__name__}.")


def _to_str(v: Any) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return "" if v is None else str(v)


def _format(fmt: str, *args: Any) -> str:
    def repl(m: re.Match) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        idx = int(m.group(1))
        if idx >= len(args):
            raise TemplateError(f"format(): index {idx} out of range")
        return _to_str(args[idx])
    return re.sub(r"\{\{|\}\}|\{(\d+)(?::[^}]*)?\}", repl, fmt)


@dataclass
class Context:
    """What an expression can see. Callbacks answer reference()/listKeys()."""

    subscription_id: str
    group_name: str
    group_location: str
    deployment_name: str
    template: dict
    given: dict[str, Any] = field(default_factory=dict)
    reference: Callable[[str, str | None, bool], Any] | None = None
    list_keys: Callable[[str, str | None], Any] | None = None
    tenant_id: str = ""
    lenient: bool = False
    _params: dict[str, Any] = field(default_factory=dict)
    _vars: dict[str, Any] = field(default_factory=dict)
    _busy: set[str] = field(default_factory=set)

    @property
    def group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.group_name}"

    # parameters and variables are evaluated lazily (defaults may use other parameters)
    def parameter(self, name: str) -> Any:
        decls = self.template.get("parameters", {})
        key = next((k for k in decls if k.lower() == name.lower()), None)
        if key is None:
            raise TemplateError(f"The template parameter '{name}' is not found.")
        if key in self._params:
            return self._params[key]
        if ("p:" + key) in self._busy:
            raise TemplateError(f"The template parameter '{key}' refers to itself.")
        self._busy.add("p:" + key)
        try:
            if key in self.given:
                value = self.given[key]
            elif "defaultValue" in decls[key]:
                value = evaluate(decls[key]["defaultValue"], self)
            else:
                raise TemplateError(f"Deployment template validation failed: 'The value for the template parameter "
                                    f"'{key}' is not provided.'")
        finally:
            self._busy.discard("p:" + key)
        self._params[key] = value
        return value

    def variable(self, name: str) -> Any:
        decls = self.template.get("variables", {})
        key = next((k for k in decls if k.lower() == name.lower()), None)
        if key is None:
            raise TemplateError(f"The template variable '{name}' is not found.")
        if key not in self._vars:
            if ("v:" + key) in self._busy:
                raise TemplateError(f"The template variable '{key}' refers to itself.")
            self._busy.add("v:" + key)
            try:
                self._vars[key] = evaluate(decls[key], self)
            finally:
                self._busy.discard("v:" + key)
        return self._vars[key]


def _resource_id(ctx: Context, args: list, scope: str = "group") -> str:
    type_idx = next((i for i, a in enumerate(args) if isinstance(a, str) and "/" in a), None)
    if type_idx is None:
        raise TemplateError("resourceId() needs a resource type such as 'Microsoft.Storage/storageAccounts'.")
    sub, group = ctx.subscription_id, ctx.group_name
    lead = args[:type_idx]
    if len(lead) == 1:
        if scope == "subscription":
            sub = lead[0]
        else:
            group = lead[0]
    elif len(lead) == 2:
        sub, group = lead
    full_type, names = args[type_idx], [str(n) for n in args[type_idx + 1:]]
    ns, *types = full_type.split("/")
    if len(types) != len(names):
        raise TemplateError(f"Unable to evaluate template language function 'resourceId': the type '{full_type}' "
                            f"requires '{len(types)}' resource name argument(s).")
    tail = "/".join(f"{t}/{n}" for t, n in zip(types, names))
    if scope == "subscription":
        return f"/subscriptions/{sub}/providers/{ns}/{tail}"
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{ns}/{tail}"


def _call(name: str, args: list, ctx: Context) -> Any:  # noqa: C901 - a dispatch table in code form
    n = name.lower()
    if n == "parameters":
        return ctx.parameter(args[0])
    if n == "variables":
        return ctx.variable(args[0])
    if n == "format":
        return _format(args[0], *args[1:])
    if n == "concat":
        if args and all(isinstance(a, list) for a in args):
            return [x for a in args for x in a]
        return "".join(_to_str(a) for a in args)
    if n == "join":
        return args[1].join(_to_str(a) for a in args[0])
    if n == "substring":
        s, start = args[0], int(args[1])
        length = int(args[2]) if len(args) > 2 else len(s) - start
        if start < 0 or length < 0 or start + length > len(s):
            raise TemplateError(f"substring(): the index and length must refer to a location within the string "
                                f"(length {len(s)}, start {start}, length {length}).")
        return s[start:start + length]
    if n == "uniquestring":
        return unique_string(*(_to_str(a) for a in args))
    if n == "guid":
        return str(uuid.UUID(bytes=hashlib.sha256("\x1f".join(map(_to_str, args)).encode()).digest()[:16]))
    if n == "resourcegroup":
        return {"id": ctx.group_id, "name": ctx.group_name, "type": "Microsoft.Resources/resourceGroups",
                "location": ctx.group_location, "properties": {"provisioningState": "Succeeded"}}
    if n == "subscription":
        return {"id": f"/subscriptions/{ctx.subscription_id}", "subscriptionId": ctx.subscription_id,
                "tenantId": ctx.tenant_id, "displayName": "Local cloud (aitk)"}
    if n == "deployment":
        return {"name": ctx.deployment_name, "properties": {"template": {"contentVersion":
                ctx.template.get("contentVersion", "1.0.0.0")}}}
    if n == "resourceid":
        return _resource_id(ctx, args)
    if n == "subscriptionresourceid":
        return _resource_id(ctx, args, scope="subscription")
    if n == "reference":
        if ctx.reference is None:
            raise Unresolved(args[0])
        full = len(args) > 2 and str(args[2]).lower() == "full"
        return ctx.reference(args[0], args[1] if len(args) > 1 else None, full)
    if n.startswith("list"):
        if ctx.list_keys is None:
            raise Unresolved(args[0])
        return ctx.list_keys(args[0], args[1] if len(args) > 1 else None)
    simple: dict[str, Callable[..., Any]] = {
        "tolower": lambda s: s.lower(), "toupper": lambda s: s.upper(), "trim": lambda s: s.strip(),
        "replace": lambda s, a, b: s.replace(a, b), "string": _to_str, "int": lambda v: int(v),
        "bool": lambda v: v if isinstance(v, bool) else str(v).lower() == "true",
        "length": lambda v: len(v), "empty": lambda v: v is None or len(v) == 0,
        "contains": lambda c, x: (x in c) if not isinstance(c, str) else (_to_str(x) in c),
        "startswith": lambda s, p: s.lower().startswith(p.lower()), "endswith": lambda s, p: s.lower().endswith(p.lower()),
        "equals": lambda a, b: a == b, "not": lambda v: not v, "and": lambda *v: all(v), "or": lambda *v: any(v),
        "if": lambda c, a, b: a if c else b, "coalesce": lambda *v: next((x for x in v if x is not None), None),
        "createarray": lambda *v: list(v), "array": lambda v: v if isinstance(v, list) else [v],
        "createobject": lambda *v: {v[i]: v[i + 1] for i in range(0, len(v), 2)},
        "union": lambda *v: ({k: x for d in v for k, x in d.items()} if isinstance(v[0], dict)
                             else list(dict.fromkeys(x for a in v for x in a))),
        "first": lambda v: v[0], "last": lambda v: v[-1], "min": lambda *v: min(v), "max": lambda *v: max(v),
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "div": lambda a, b: int(a / b), "mod": lambda a, b: a % b, "json": json.loads, "null": lambda: None,
        "true": lambda: True, "false": lambda: False, "base64": lambda s: base64.b64encode(s.encode()).decode(),
        "split": lambda s, d: s.split(d) if isinstance(d, str) else re.split("|".join(map(re.escape, d)), s),
        "less": lambda a, b: a < b, "greater": lambda a, b: a > b, "lessorequals": lambda a, b: a <= b,
        "greaterorequals": lambda a, b: a >= b, "skip": lambda v, k: v[int(k):], "take": lambda v, k: v[:int(k)],
        "range": lambda a, b: list(range(int(a), int(a) + int(b))), "indexof": lambda s, x: s.lower().find(x.lower()),
    }
    fn = simple.get(n)
    if fn is None:
        raise TemplateError(f"The template function '{name}' is not known to the local cloud.")
    try:
        return fn(*args)
    except (TypeError, ValueError, IndexError, KeyError) as e:
        raise TemplateError(f"Unable to evaluate template language function '{name}': {e}") from None


def _eval(node: tuple, ctx: Context) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "call":
        return _call(node[1], [_eval(a, ctx) for a in node[2]], ctx)
    if kind == "prop":
        return _get_prop(_eval(node[1], ctx), node[2])
    if kind == "index":
        base, idx = _eval(node[1], ctx), _eval(node[2], ctx)
        if isinstance(base, list) and isinstance(idx, int):
            if not -len(base) <= idx < len(base):
                raise TemplateError(f"The language expression index {idx} is out of range (length {len(base)}).")
            return base[idx]
        return _get_prop(base, _to_str(idx))
    raise TemplateError(f"bad node {kind}")


def evaluate_string(text: str, ctx: Context) -> Any:
    if text.startswith("[["):
        return text[1:]
    if not is_expression(text):
        return text
    try:
        return _eval(parse(text[1:-1]), ctx)
    except Unresolved:
        if ctx.lenient:
            return text
        raise


def evaluate(value: Any, ctx: Context) -> Any:
    """Evaluate every expression inside ``value`` (dicts, lists and strings, recursively)."""
    if isinstance(value, str):
        return evaluate_string(value, ctx)
    if isinstance(value, list):
        return [evaluate(v, ctx) for v in value]
    if isinstance(value, dict):
        return {evaluate(k, ctx) if is_expression(k) else k: evaluate(v, ctx) for k, v in value.items()}
    return value
