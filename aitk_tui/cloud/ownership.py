"""Which deployment and which resources in a resource group are this project's.

Several projects may provision into one resource group. Each names its provisioning
deployment after itself, ``aitk-inference-<project id>``, and tags what it creates with
``aitk-project: <project id>`` (as azd tags with ``azd-env-name``), so that one project's
teardown never finds another's record. The project id lives in ``.aitk/state.json``; a
project provisioned before ids existed has the shared record ``aitk-inference``, which is
still read, but trusted only while its outputs name what ``inference.config.json`` names
(the last project to provision into the group owns that record).
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from ..config.state import ProjectState
from .models import pick

if TYPE_CHECKING:
    from ..config.inference_config import InferenceConfig
    from ..project import Project

LEGACY_DEPLOYMENT_NAME = "aitk-inference"
DEPLOYMENT_PREFIX = LEGACY_DEPLOYMENT_NAME + "-"
PROJECT_TAG = "aitk-project"  # the tag key on every resource (and the deployment) a project creates
PROJECT_PARAMETER = "aitkProject"  # the template parameter that carries the tag's value
# Outputs compared with inference.config.json: a deployment is this project's record only
# while it names the same group, account, share and app.
COMPARED = ("RESOURCE_GROUP_NAME", "STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME", "ACA_APP_NAME")
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")


def deployment_name(project_id: str) -> str:
    """Deployment names: 1-64 of letters, digits, '-', '_', '.', '(' and ')'."""
    return DEPLOYMENT_PREFIX + project_id


def new_project_id(folder_name: str) -> str:
    """'<folder slug>-<8 hex>': readable in the portal, unique across machines and clones."""
    slug = re.sub(r"[^a-z0-9]+", "-", folder_name.lower()).strip("-")[:24].strip("-")
    token = secrets.token_hex(4)
    return f"{slug}-{token}" if slug else token


def stored_project_id(project: "Project") -> str | None:
    value = ProjectState.load(project.state_path).project_id
    return value if value and _ID.fullmatch(value) else None


def output(deployment: Any, key: str) -> Any:
    outputs = pick(deployment, "properties", "outputs", default=None) or {}
    if not isinstance(outputs, dict):
        try:
            outputs = dict(outputs)
        except (TypeError, ValueError):
            return None
    for k, v in outputs.items():
        if k.lower() == key.lower():
            return v.get("value") if isinstance(v, dict) else pick(v, "value")
    return None


def disagreements(deployment: Any, config: "InferenceConfig") -> list[str]:
    """'ACA_APP_NAME: the deployment says x, inference.config.json says y', per output that differs
    (names compare case-insensitively, as Azure's do). A deployment without outputs (still
    running, or failed) disagrees on everything it does not say."""
    out = []
    for key in COMPARED:
        mine = getattr(config, key) or ""
        theirs = output(deployment, key)
        if str(theirs or "").lower() != mine.lower():
            out.append(f"{key}: the deployment says {theirs or 'nothing'}, inference.config.json says {mine or 'nothing'}")
    return out


def adopt_project_id(deployments: list[Any], config: "InferenceConfig | None") -> str | None:
    """The id of the one ``aitk-inference-<id>`` deployment whose outputs agree with ``config``
    (this project provisioned from another clone or machine, whose ``.aitk/`` is not here)."""
    if config is None:
        return None
    found = [str(pick(d, "name"))[len(DEPLOYMENT_PREFIX):] for d in deployments
             if str(pick(d, "name", default="")).startswith(DEPLOYMENT_PREFIX) and not disagreements(d, config)]
    found = [f for f in found if _ID.fullmatch(f)]
    return found[0] if len(found) == 1 else None


def resolve_project_id(project: "Project", deployments: list[Any], config: "InferenceConfig | None") -> str:
    """This project's id: the stored one, else adopted from its deployment, else a new one;
    stored in ``.aitk/state.json`` (OSError is the caller's: provisioning cannot name its
    deployment without it)."""
    known = stored_project_id(project)
    if known:
        return known
    value = adopt_project_id(deployments, config) or new_project_id(project.root.name)
    ProjectState.update(project.state_path, project_id=value)
    return value
