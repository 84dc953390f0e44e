"""A session keeps nothing that belongs to what it deleted or re-made: after "tear down
everything" and a new provision in the same session (the TUI's), a deploy signs its share
requests with the new storage account's key (it kept the old one: a MAC signature error
read as "you do not have permission")."""

from __future__ import annotations

from aitk_tui.events import Done, Failed

from .deploy_helpers import deploy_all, provisioned


async def test_redeploy_after_tearing_everything_down_in_the_same_session(session):
    config = await provisioned(session)
    first = await deploy_all(session, config)
    assert isinstance(first[-1], Done), first[-1]
    old_key = await session.storage_key(config.SUBSCRIPTION_ID, config.RESOURCE_GROUP_NAME,
                                        config.STORAGE_ACCOUNT_NAME)

    plan = await session.teardown_plan(config, everything=True)
    down = [e async for e in session.tear_down(config, plan)]
    assert isinstance(down[-1], Done), down[-1]

    config = await provisioned(session)
    again = await deploy_all(session, config)
    assert not any(isinstance(e, Failed) for e in again), again[-1]
    assert isinstance(again[-1], Done), again[-1]
    new_key = await session.storage_key(config.SUBSCRIPTION_ID, config.RESOURCE_GROUP_NAME,
                                        config.STORAGE_ACCOUNT_NAME)
    assert new_key != old_key  # a new account, a new key: the old one is not what signed it
