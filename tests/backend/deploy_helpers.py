"""Helpers shared by the deploy tests: a provisioned project on the local cloud, a deploy run
to the end, and the share's folder on disk."""

from __future__ import annotations

from pathlib import Path

from aitk_tui.cloud.session import CloudSession
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.config.parameters import ParametersDocument
from aitk_tui.events import Done
from aitk_tui.local.credential import LOCAL_SUBSCRIPTION_ID as SUB


async def provisioned(session: CloudSession) -> InferenceConfig:
    await session.create_resource_group(SUB, "rg-demo", "eastus")
    params = ParametersDocument.load(session.project.parameters_path)
    events = [e async for e in session.provision(SUB, "rg-demo", params)]
    assert isinstance(events[-1], Done), events[-1]
    return InferenceConfig.load(session.project.config_path)


async def deploy_all(session: CloudSession, config: InferenceConfig, **kw) -> list:
    kw.setdefault("restart", False)
    return [e async for e in session.deploy(config, **kw)]


def share_dir(cloud, config: InferenceConfig) -> Path:
    return cloud.files_root / config.STORAGE_ACCOUNT_NAME / config.FILE_SHARE_NAME
