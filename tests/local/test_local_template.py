"""The ARM expression evaluator on its own (what compiled bicep emits, and its corners)."""

from __future__ import annotations

import pytest

from aitk_tui.local.template import Context, TemplateError, Unresolved, evaluate, evaluate_string, unique_string


def ctx(**kw) -> Context:
    template = {"parameters": {"name": {"type": "string", "defaultValue": "[format('app{0}', parameters('suffix'))]"},
                               "suffix": {"type": "string", "defaultValue": "[substring(uniqueString(resourceGroup().id), 0, 5)]"},
                               "cmds": {"type": "array"}, "loop": {"type": "string", "defaultValue": "[parameters('loop')]"}},
                "variables": {"cmd": "[join(parameters('cmds'), ' && ')]"}}
    resources = {"/subscriptions/s/resourceGroups/g/providers/Microsoft.X/things/t": {"fqdn": "h:1", "keys": [{"value": "k1"}]}}

    def reference(rid, api, full):
        if rid not in resources:
            raise Unresolved(rid)
        return resources[rid]
    return Context("s", "g", "eastus", "dep", template, kw.pop("given", {"cmds": ["a", "b"]}),
                   reference=reference, list_keys=lambda rid, api: reference(rid, api, False), **kw)


@pytest.mark.parametrize("expr, value", [
    ("[parameters('name')]", "app" + unique_string("/subscriptions/s/resourceGroups/g")[:5]),
    ("[variables('cmd')]", "a && b"),
    ("[format('{0}/{1}', 'x', 'default')]", "x/default"),
    ("[format('{{literal}} {0}', 1)]", "{literal} 1"),
    ("[concat('it''s', ' ', string(2))]", "it's 2"),
    ("[resourceId('Microsoft.X/things', 't')]", "/subscriptions/s/resourceGroups/g/providers/Microsoft.X/things/t"),
    ("[resourceId('Microsoft.X/things/subs', 't', 'u')]",
     "/subscriptions/s/resourceGroups/g/providers/Microsoft.X/things/t/subs/u"),
    ("[reference(resourceId('Microsoft.X/things', 't'), '2020-01-01').fqdn]", "h:1"),
    ("[listKeys(resourceId('Microsoft.X/things', 't'), '2020-01-01').keys[0].value]", "k1"),
    ("[reference(resourceId('Microsoft.X/things', 't'))['FQDN']]", "h:1"),  # property names ignore case
    ("[subscription().subscriptionId]", "s"),
    ("[resourceGroup().location]", "eastus"),
    ("[if(equals(length(parameters('cmds')), 2), toUpper('y'), 'n')]", "Y"),
    ("[createArray(1, 2, 3)[2]]", 3),
    ("[[not an expression]", "[not an expression]"),
    ("plain text", "plain text"),
])
def test_expressions(expr, value):
    assert evaluate_string(expr, ctx()) == value


def test_unique_string_is_13_lowercase_base32_and_deterministic():
    a = unique_string("/subscriptions/s/resourceGroups/one")
    assert len(a) == 13 and a == a.lower() and set(a) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert a == unique_string("/subscriptions/s/resourceGroups/one") != unique_string("/subscriptions/s/resourceGroups/two")


def test_nested_values_are_evaluated_and_unresolved_kept_when_lenient():
    value = {"a": ["[variables('cmd')]", {"b": "[reference(resourceId('Microsoft.X/things', 'missing')).fqdn]"}]}
    lenient = evaluate(value, ctx(lenient=True))
    assert lenient == {"a": ["a && b", {"b": value["a"][1]["b"]}]}
    with pytest.raises(Unresolved):
        evaluate(value, ctx())


@pytest.mark.parametrize("expr, message", [
    ("[parameters('nope')]", "not found"),
    ("[parameters('loop')]", "refers to itself"),
    ("[substring('abc', 2, 5)]", "substring"),
    ("[noSuchFunction()]", "not known"),
    ("[concat('a', ]", "Unexpected"),
    ("[createArray(1)[3]]", "out of range"),
    ("[resourceGroup().nope]", "doesn't exist"),
])
def test_errors_are_template_errors(expr, message):
    with pytest.raises(TemplateError, match=message):
        evaluate_string(expr, ctx())


def test_a_missing_required_parameter_is_named():
    with pytest.raises(TemplateError, match="'cmds' is not provided"):
        evaluate_string("[variables('cmd')]", ctx(given={}))
