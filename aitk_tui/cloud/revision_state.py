"""A revision's running state as Azure really reports it, sorted into what it means for a user.

The REST spec's ``RevisionRunningState`` enum (Running, Processing, Stopped, Degraded, Failed,
Unknown) is not all that revisions report. ACA's own documentation of a revision's running
status (learn.microsoft.com/azure/container-apps/revisions#running-status) also lists
Activating ("zero replicas are running, one replica is being provisioned"), ScaledToZero,
ActivationFailed ("the first replica failed to provision"), RunningAtMaxScale and
Deprovisioning, and real revisions return them (Azure/azure-rest-api-specs#29102:
``ActivationFailed`` after a VolumeMountFailure, ``RunningAtMaxScale``;
microsoft/vscode-azurecontainerapps#1088: ``ScaledToZero`` for a healthy deploy). A failed
revision says why in a revision-level ``runningStateDetails`` that the spec does not list
either, e.g. "Deployment Progress Deadline Exceeded. 0/2 replicas ready.".

The SDK's models keep such unknown keys (``rest_json`` of a revision has them), so this
module reads the REST JSON. No Textual, no SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Phase = Literal["failed", "degraded", "starting", "asleep", "running", "stopped", "unknown"]

_PHASES: dict[str, Phase] = {
    "activationfailed": "failed", "failed": "failed",
    "degraded": "degraded",
    "activating": "starting", "processing": "starting", "provisioning": "starting", "scaling": "starting",
    "scaledtozero": "asleep",
    "running": "running", "runningatmaxscale": "running",
    "stopped": "stopped", "deprovisioning": "stopped", "deprovisioned": "stopped",
}


def phase_of(running_state: str | None, provisioning_state: str | None = None,
             provisioning_error: str | None = None) -> Phase:
    """What a revision's states mean: failed (it cannot start; waiting will not help),
    degraded (a replica failed), starting, asleep (scaled to zero), running, stopped, unknown."""
    if (provisioning_state or "").lower() == "failed":
        return "failed"
    phase = _PHASES.get((running_state or "").replace(" ", "").lower(), "unknown")
    if phase == "unknown" and provisioning_error:
        return "failed"
    return phase


@dataclass(frozen=True)
class RevisionState:
    """One revision's state, read from its REST JSON (``GET .../revisions/{name}``)."""

    name: str
    running_state: str | None
    details: str | None  # the revision-level runningStateDetails (not in the spec; Azure sends it)
    provisioning_state: str | None = None
    provisioning_error: str | None = None
    replicas: int | None = None
    health_state: str | None = None

    @property
    def phase(self) -> Phase:
        return phase_of(self.running_state, self.provisioning_state, self.provisioning_error)

    @property
    def failed(self) -> bool:
        return self.phase == "failed"

    def why(self) -> str | None:
        """Azure's own words for a failed or degraded revision: details, else the provisioning error."""
        for text in (self.details, self.provisioning_error):
            if text and str(text).strip():
                return str(text).strip()[:300]
        return None

    def sentence(self) -> str:
        """One sentence for a revision that cannot serve, e.g. "Revision app--0000002 failed to
        activate (ActivationFailed): Deployment Progress Deadline Exceeded. 0/2 replicas ready."."""
        verb = {"failed": "failed to activate" if (self.running_state or "").lower() == "activationfailed"
                else "failed", "degraded": "is degraded"}.get(self.phase, f"is {self.running_state or 'unknown'}")
        lead = f"Revision {self.name} {verb}" + (f" ({self.running_state})" if self.running_state else "")
        why = (self.why() or "").rstrip(".")
        return f"{lead}: {why}." if why else f"{lead}."


def text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(getattr(value, "value", value))


def revision_state(rev: dict[str, Any]) -> RevisionState:
    """The state of one revision from its REST JSON (camelCase, as ``rest_json`` gives it)."""
    p = rev.get("properties") or {}
    replicas = p.get("replicas")
    return RevisionState(
        name=str(rev.get("name") or "?"), running_state=text(p.get("runningState")),
        details=text(p.get("runningStateDetails")), provisioning_state=text(p.get("provisioningState")),
        provisioning_error=text(p.get("provisioningError")),
        replicas=replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else None,
        health_state=text(p.get("healthState")))


def latest_revision_name(app: dict[str, Any]) -> str | None:
    """The app's latest revision; Microsoft's own ``ContainerApps_Get`` example has only
    ``latestReadyRevisionName``, so fall back to it (as ``deploy`` does)."""
    props = app.get("properties") or {}
    return text(props.get("latestRevisionName")) or text(props.get("latestReadyRevisionName"))
