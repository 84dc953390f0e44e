"""Subscriptions and resource groups (blocking; the session runs these in threads)."""

from __future__ import annotations

from ..config import naming
from ..errors import AitkError
from .clients import ClientFactory
from .models import ResourceGroupInfo, Subscription
from .sdkerrors import InputError, describe, is_not_found


def _state(value: object) -> str:
    return str(getattr(value, "value", value) or "Unknown")


def list_subscriptions(factory: ClientFactory) -> list[Subscription]:
    try:
        client = factory.subscriptions()
        subs = [Subscription(id=s.subscription_id, name=s.display_name or s.subscription_id, state=_state(s.state))
                for s in client.subscriptions.list()]
    except Exception as e:  # noqa: BLE001
        raise describe(e, "list subscriptions") from None
    # Enabled ones first, then by name: what a picker wants.
    return sorted(subs, key=lambda s: (s.state != "Enabled", s.name.lower()))


def list_resource_groups(factory: ClientFactory, subscription_id: str) -> list[ResourceGroupInfo]:
    _check_subscription(subscription_id)
    try:
        client = factory.resources(subscription_id)
        groups = [ResourceGroupInfo(name=g.name, location=g.location) for g in client.resource_groups.list()]
    except Exception as e:  # noqa: BLE001
        raise describe(e, f"list the resource groups of subscription {subscription_id}") from None
    return sorted(groups, key=lambda g: g.name.lower())


def create_resource_group(factory: ClientFactory, subscription_id: str, name: str, location: str) -> ResourceGroupInfo:
    """Create (or reuse, when it already exists in the same region) a resource group.

    The name and region are checked against Azure's rules before anything is sent.
    """
    _check_subscription(subscription_id)
    try:
        naming.resource_group_name(name)
        naming.location(location)
    except naming.NameError_ as e:
        raise InputError(f"{e}.") from None
    try:
        client = factory.resources(subscription_id)
        try:
            existing = client.resource_groups.get(name)
        except Exception as e:  # noqa: BLE001
            if not is_not_found(e):
                raise
            existing = None
        if existing is not None:
            if (existing.location or "").lower() != location.lower():
                raise AitkError(f"Resource group {name} already exists in {existing.location}, not {location}.",
                                "use that location, or choose another name")
            return ResourceGroupInfo(existing.name, existing.location)
        group = client.resource_groups.create_or_update(name, {"location": location})
    except AitkError:
        raise
    except Exception as e:  # noqa: BLE001
        raise describe(e, f"create resource group {name}") from None
    return ResourceGroupInfo(group.name, group.location)


def resource_group_location(factory: ClientFactory, subscription_id: str, name: str) -> str | None:
    """The group's region; None when it does not exist. Both names are checked against Azure's
    rules first: they go into the request path, where a group named '..' would address the
    subscription itself once a client removes the dot segment."""
    try:
        naming.subscription_id(subscription_id)
        naming.resource_group_name(name)
    except naming.NameError_ as e:
        raise InputError(f"{e}.") from None
    try:
        return factory.resources(subscription_id).resource_groups.get(name).location
    except Exception as e:  # noqa: BLE001
        if is_not_found(e):
            return None
        raise describe(e, f"read resource group {name}") from None


def _check_subscription(subscription_id: str) -> None:
    if not subscription_id or not isinstance(subscription_id, str):
        raise InputError("No subscription chosen.", "pass --subscription ID (see `aitk subscriptions`)")
