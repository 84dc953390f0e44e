"""A scripted stand-in for ``CloudSession`` (same interface), for fast deterministic UI tests.

The flow test runs against the real local cloud; these keep pilot and snapshot tests
quick and byte-for-byte repeatable (fixed names, fixed elapsed times, no clocks).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aitk_tui.cloud.models import (
    AppStatus,
    Change,
    Deployed,
    Identity,
    Provisioned,
    ResourceGroupInfo,
    SignedIn,
    Subscription,
    WhatIf,
)
from aitk_tui.cloud.operate import AppScale, Scaled, ScaleSettings
from aitk_tui.config.inference_config import InferenceConfig
from aitk_tui.config.state import ProjectState
from aitk_tui.endpoints import CloudEndpoints
from aitk_tui.errors import AitkError
from aitk_tui.events import (
    Done,
    Failed,
    HealthWait,
    Info,
    ResourceProgress,
    UploadProgress,
)

SUB_ID = "00000000-0000-0000-0000-00000000c0de"
RESOURCES = [
    ("Microsoft.Storage/storageAccounts", "aistoragedemo1"),
    ("Microsoft.Storage/storageAccounts/fileServices/shares", "aistoragedemo1/default/aifileshare"),
    ("Microsoft.OperationalInsights/workspaces", "ailogdemo1"),
    ("Microsoft.App/managedEnvironments", "aienvdemo1"),
    ("Microsoft.App/managedEnvironments/storages", "aienvdemo1/aienvstorage"),
    ("Microsoft.App/containerApps", "aiacaappdemo1"),
]


@dataclass
class FakeSession:
    project: Any
    signed_in: bool = True
    groups: list[ResourceGroupInfo] = field(default_factory=lambda: [
        ResourceGroupInfo("rg-inference", "westus3"), ResourceGroupInfo("rg-train", "swedencentral")])
    fail_provision_on: str | None = None
    step_delay_s: float = 0.0
    hold_provision: asyncio.Event | None = None  # provision waits here (to test cancel)
    endpoint: str = "aiacaappdemo1.westus3.azurecontainerapps.io"  # Azure's shape (loopback = the local cloud)
    api_key_value: str = "test-key-123456"
    calls: list[str] = field(default_factory=list)
    endpoints: CloudEndpoints = field(default_factory=lambda: CloudEndpoints("local"))
    cancelled: bool = False
    failed_revision: str | None = None  # revision_failure's answer (Azure's ActivationFailed, in a sentence)
    min_replicas: int = 0  # the app's scale: 0 sleeps when idle, >= 1 keeps a GPU billing

    async def whoami(self) -> Identity:
        self.calls.append("whoami")
        if not self.signed_in:
            raise AitkError("You are not signed in.", "no credential found")
        return Identity("dev@contoso.com", "tenant-1", "local")

    async def sign_in(self):
        self.calls.append("sign_in")
        yield Info("To sign in, open https://microsoft.com/devicelogin and enter the code ABCD-1234.")
        self.signed_in = True
        yield Done("Signed in as dev@contoso.com", result=SignedIn(await self.whoami()))

    async def list_subscriptions(self) -> list[Subscription]:
        self.calls.append("list_subscriptions")
        await asyncio.sleep(0)
        return [Subscription(SUB_ID, "Contoso Dev", "Enabled"),
                Subscription("11111111-2222-3333-4444-555555555555", "Contoso Prod", "Enabled")]

    async def list_resource_groups(self, subscription_id: str) -> list[ResourceGroupInfo]:
        self.calls.append(f"list_resource_groups:{subscription_id}")
        await asyncio.sleep(0)
        return list(self.groups)

    async def create_resource_group(self, subscription_id: str, name: str, location: str) -> ResourceGroupInfo:
        self.calls.append(f"create_resource_group:{name}:{location}")
        group = ResourceGroupInfo(name, location)
        self.groups.append(group)
        return group

    async def what_if(self, subscription_id, resource_group, params):
        self.calls.append("what_if")
        yield Info("Validating parameters against Azure naming rules… ok")
        yield Done(f"{len(RESOURCES)} to create, 0 to modify",
                   result=WhatIf(tuple(Change("Create", t, n) for t, n in RESOURCES)))

    async def provision(self, subscription_id, resource_group, params):
        self.calls.append(f"provision:{subscription_id}:{resource_group}")
        try:
            yield Info(f"Deploying infra/provision/inference.json to {resource_group}")
            if self.hold_provision is not None:
                yield ResourceProgress(*RESOURCES[0], "Running", 1.0)
                await self.hold_provision.wait()
            for i, (rtype, name) in enumerate(RESOURCES):
                yield ResourceProgress(rtype, name, "Running", float(i))
                if self.step_delay_s:
                    await asyncio.sleep(self.step_delay_s)
                if name == self.fail_provision_on:
                    message = f"The resource {name} could not be created: quota exceeded for GPU profile."
                    yield ResourceProgress(rtype, name, "Failed", float(i + 2), message)
                    yield Failed("Provisioning failed: the container app could not be created (GPU quota).",
                                 "Microsoft.App/containerApps/aiacaappdemo1: QuotaExceeded: "
                                 "Consumption-GPU-NC24-A100 quota is 0 in westus3")
                    return
                yield ResourceProgress(rtype, name, "Succeeded", float(i + 3))
            config = {"SUBSCRIPTION_ID": subscription_id, "RESOURCE_GROUP_NAME": resource_group,
                      "STORAGE_ACCOUNT_NAME": "aistoragedemo1", "FILE_SHARE_NAME": "aifileshare",
                      "ACA_APP_NAME": "aiacaappdemo1", "ACA_APP_ENDPOINT": self.endpoint}
            written = InferenceConfig.model_validate(config)
            written.save(self.project.config_path)
            yield Done("6 resources ready; wrote infra/inference.config.json", result=Provisioned(written, 8.0))
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled = True
            raise

    async def deploy(self, config, *, restart: bool = True, wait: bool = True,
                     health_timeout_s: float | None = None, **options: Any):
        self.calls.append("deploy")
        files = ["inference_server/__main__.py", "inference_server/app.py", "inference_server/requirements.txt"]
        for i, path in enumerate(files, 1):
            yield UploadProgress(path, i, len(files), i * 1000, len(files) * 1000)
        yield Info("Restarting revision aiacaappdemo1--0000001")
        yield HealthWait("loading", 2.0, "model loading")
        yield HealthWait("ok", 4.0)
        yield Done("uploaded 3 files (3000 bytes), 0 unchanged, 0 removed",
                   result=Deployed(3, 3000, 0, 0, (), config.endpoint_url, "aiacaappdemo1--0000001", True, True))

    async def status(self, config) -> AppStatus:
        return AppStatus(config.ACA_APP_NAME or "app", config.endpoint_url, "Succeeded", "Running",
                         "rev1", 1, True)

    async def replica_logs(self, config, *, follow: bool = True, tail_lines: int = 100, kind: str = "console"):
        from aitk_tui.events import LogLine

        self.calls.append(f"replica_logs:{kind}")
        for i in range(3):
            if kind == "system":
                yield LogLine(f"ContainerStarted: system event {i}", "x7k2p", kind="system")
            else:
                yield LogLine(f"INFO: replica line {i}")
        if follow:
            await asyncio.Event().wait()

    async def revision_failure(self, config):
        self.calls.append("revision_failure")
        return self.failed_revision

    async def endpoint_status(self, config):
        from aitk_tui.cloud.endpoint_status import EndpointStatus, ReplicaInfo, RevisionInfo
        from aitk_tui.cloud.operate import ScaleSettings

        self.calls.append("endpoint_status")
        rev = "aiacaappdemo1--0000001"
        return EndpointStatus(
            config.ACA_APP_NAME or "app", True, "Succeeded", "Running", config.endpoint_url, rev,
            (RevisionInfo(rev, True, 100, "2025-06-01T10:00:00Z", 1, "Running", "Healthy", None),),
            (ReplicaInfo(f"{rev}-646779b4b6-x7k2p", rev, "Running", True, 0, "2025-06-01T10:00:00Z", None),),
            ScaleSettings(0, 2, 10, True), "Consumption-GPU-NC24-A100", None, "ok", None, None, 0.0)

    def _scale(self) -> ScaleSettings:
        return ScaleSettings(self.min_replicas, 2, 10, True)

    async def read_scale(self, config) -> AppScale:
        return AppScale(config.ACA_APP_NAME or "app", self._scale(), "Consumption-GPU-NC24-A100", None)

    async def scale(self, config, request):
        self.calls.append(f"scale:{request.min_replicas}")
        before = self._scale()
        if request.min_replicas is not None:
            self.min_replicas = request.min_replicas
        yield Info(f"Updating container app {config.ACA_APP_NAME}")
        yield Done(f"{config.ACA_APP_NAME}: min {self.min_replicas}",
                   result=Scaled(config.ACA_APP_NAME or "app", before, self._scale(), None, None))

    async def api_key(self, config, endpoint: str | None = None, *, allow_insecure_http: bool = False) -> str:
        return self.api_key_value

    def load_state(self) -> ProjectState:
        return ProjectState.load(self.project.state_path)

    def remember(self, **values: Any) -> ProjectState:
        return ProjectState.update(self.project.state_path, **{k: v for k, v in values.items() if v is not None})

    async def upload_models(self, config, request, **options):
        self.calls.append(f"upload_models:{request.adapter_dest}")
        files = [f"{request.adapter_dest}/adapter_config.json", f"{request.adapter_dest}/adapter_model.safetensors"]
        for i, path in enumerate(files, 1):
            yield UploadProgress(path, i, len(files), i * 1000, len(files) * 1000)
        from aitk_tui.cloud.models_upload import ModelsUploaded

        yield Done(f"Uploaded 2 files (2.0 KB) to {config.FILE_SHARE_NAME}", result=ModelsUploaded(()))

    async def list_models(self, config) -> list:
        from aitk_tui.cloud.models_upload import ShareModel

        self.calls.append("list_models")
        return [ShareModel("adapter", "models/default/adapter", 2, 2000)]

    async def teardown_plan(self, config, *, everything: bool = False):
        from aitk_tui.cloud.teardown import Target, TeardownPlan

        self.calls.append(f"teardown_plan:{everything}")
        base = f"/subscriptions/{SUB_ID}/resourceGroups/{config.RESOURCE_GROUP_NAME}/providers/"
        chosen = RESOURCES if everything else RESOURCES[-1:]
        targets = tuple(Target.from_id(base + f"{t}/{n}") for t, n in reversed(chosen) if "/" not in n)
        return TeardownPlan(config.RESOURCE_GROUP_NAME, targets, (), "kept: the resource group")

    async def tear_down(self, config, plan):
        self.calls.append(f"tear_down:{len(plan.delete)}")
        for i, t in enumerate(plan.delete):
            yield ResourceProgress(t.type, t.name, "Deleting", float(i))
            yield ResourceProgress(t.type, t.name, "Deleted", float(i) + 0.5)
        from aitk_tui.cloud.teardown import TornDown

        yield Done(f"Deleted {len(plan.delete)} resources in {plan.resource_group}",
                   result=TornDown(plan.resource_group, plan.delete, ()))

    async def close(self) -> None:
        self.calls.append("close")


def factory_for(session: FakeSession):
    async def open_session(project, **kwargs):
        return session

    return open_session


def write_config(project, endpoint: str = "aiacaappdemo1.westus3.azurecontainerapps.io", **overrides: str) -> None:
    config = {"SUBSCRIPTION_ID": SUB_ID, "RESOURCE_GROUP_NAME": "rg-inference",
              "STORAGE_ACCOUNT_NAME": "aistoragedemo1", "FILE_SHARE_NAME": "aifileshare",
              "ACA_APP_NAME": "aiacaappdemo1", "ACA_APP_ENDPOINT": endpoint}
    config.update(overrides)
    project.config_path.write_text(json.dumps(config, indent=2) + "\n")


class FakeChatClient:
    """Same surface as ``ChatClient`` with fixed timings, for deterministic snapshots."""

    def __init__(self, base_url: str, api_key: str | None, *, verify=True) -> None:
        self.base_url = base_url

    async def stream_chat(self, messages, *, model=None, temperature=None, max_tokens=None, **kw):
        from aitk_tui.chat.client import Delta, Finished, Usage

        answer = ["A LoRA adapter is a small set of ", "**low-rank** weight updates:\n\n",
                  "- the base model stays frozen\n", "- only the adapter is trained\n\n",
                  "```python\nmodel = PeftModel.from_pretrained(base, path)\n```\n"]
        for piece in answer:
            yield Delta(piece)
        yield Finished("stop", Usage(12, 42, 54), 0.18, 57.3, "demo-adapter")

    async def aclose(self) -> None:
        pass
