"""Resource providers as ARM sees them: which api-versions each serves, whether the
subscription is registered for it, and the errors ARM answers when not.

- A request for a provider's routes, or a template resource, with an api-version the
  provider does not serve is answered 400 ``NoRegisteredProviderFound`` with ARM's text
  ("No registered resource provider found for location '...' and API version '...' for
  type '...'. The supported api-versions are '...'", azure-cli#28496, LogicAppsUX#8196).
  Served: well-formed versions no older than the provider's first, and for Microsoft.App
  every version of its published REST specs up to the newest listed here (newer ones are
  taken as served, so a newer SDK keeps working).
- With the ``unregistered_providers`` switch (:mod:`.faults`), a provider's routes answer
  409 ``MissingSubscriptionRegistration`` with the namespace as ``target``
  (msrestazure-for-python#53) until it is registered.
- :func:`validation_failed` nests a provider's refusal the way ARM's pre-flight does
  (``InvalidTemplateDeployment`` > ``ValidationForResourceFailed`` > cause; Azure/bicep#14569).
"""

from __future__ import annotations

import re
import uuid

from .httpd import HttpError

_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview|-beta|-alpha|-privatepreview)?$")
FIRST_VERSION = {
    "microsoft.app": "2022-01-01-preview",
    "microsoft.storage": "2015-05-01-preview",
    "microsoft.operationalinsights": "2015-03-20",
    "microsoft.resources": "2014-04-01",
}
# Microsoft.App's published api-versions (azure-rest-api-specs, specification/app).
APP_VERSIONS = (
    "2022-01-01-preview", "2022-03-01", "2022-06-01-preview", "2022-10-01", "2022-11-01-preview",
    "2023-04-01-preview", "2023-05-01", "2023-05-02-preview", "2023-08-01-preview", "2023-11-02-preview",
    "2024-02-02-preview", "2024-03-01", "2024-08-02-preview", "2024-10-02-preview", "2025-01-01",
    "2025-02-02-preview",
)


def _date(version: str) -> str:
    return version[:10]


def serves(namespace: str, version: str) -> bool:
    m = _VERSION.match(version or "")
    if not m:
        return False
    ns = namespace.lower()
    first = FIRST_VERSION.get(ns)
    if first is not None and _date(version) < _date(first):
        return False
    if ns == "microsoft.app" and _date(version) <= _date(APP_VERSIONS[-1]):
        return version in APP_VERSIONS
    return True


def supported_versions(namespace: str) -> list[str]:
    if namespace.lower() == "microsoft.app":
        return list(reversed(APP_VERSIONS))
    first = FIRST_VERSION.get(namespace.lower())
    return [f"{first} and later"] if first else []


def no_registered_provider(namespace: str, resource_type: str, version: str, location: str) -> HttpError:
    listed = ", ".join(supported_versions(namespace))
    return HttpError(400, "NoRegisteredProviderFound",
                     f"No registered resource provider found for location '{location}' and API version "
                     f"'{version}' for type '{resource_type}'. The supported api-versions are '{listed}'. "
                     f"The supported locations are 'eastus, westus3, swedencentral, australiaeast, westeurope, "
                     f"northeurope'.")


def missing_registration(namespace: str) -> HttpError:
    message = (f"The subscription is not registered to use namespace '{namespace}'. See "
               "https://aka.ms/rps-not-found for how to register subscriptions.")
    return HttpError(409, "MissingSubscriptionRegistration", message,
                     details=[{"code": "MissingSubscriptionRegistration", "target": namespace, "message": message}])


def validation_failed(deployment: str, cause: dict) -> HttpError:
    """ARM's pre-flight refusal of one resource: the cause two levels down."""
    return HttpError(400, "InvalidTemplateDeployment",
                     f"The template deployment '{deployment}' is not valid according to the validation procedure. "
                     f"The tracking id is '{uuid.uuid4()}'. See inner errors for details.",
                     details=[{"code": "ValidationForResourceFailed",
                               "message": "Validation failed for a resource. Check 'Error.Details[0]' for more "
                                          "information.",
                               "details": [cause]}])
