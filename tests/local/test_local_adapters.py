"""Several adapters and ``serveBase`` travel from the parameters through the template to the
replica's environment, and the server reads that environment as the adapters on the share.
(The whole HTTP loop with the real server is test_local_real_replica's; here the replica's
environment is taken from ``prepare`` and loaded in-process, which takes seconds.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aitk_tui.cloud.clients import ClientFactory
from inference_server.loading import load_model
from inference_server.settings import ServerSettings, check_paths
from tests.fixtures_local import LOCAL_SUBSCRIPTION_ID as SUB
from tests.fixtures_local import deploy, upload_folder

ADAPTERS = ["tuned=/mount/adapters/tuned", "second=/mount/adapters/second"]


def _share(factory, out):
    key = factory.storage(SUB).storage_accounts.list_keys("rg1", out["STORAGE_ACCOUNT_NAME"]).as_dict()["keys"][0]["value"]
    return factory.share(out["STORAGE_ACCOUNT_NAME"], out["FILE_SHARE_NAME"], key)


def _replica_env(cloud, factory, out) -> tuple[Path, dict[str, str]]:
    app = factory.container_apps(SUB).container_apps.get("rg1", out["ACA_APP_NAME"])
    _argv, mount, env = cloud.replicas.prepare(app.id, note=lambda message: None)
    return mount, env


def _server_settings(monkeypatch, env: dict[str, str]) -> ServerSettings:
    """The settings the server builds from the replica's environment (nothing else)."""
    for name in [n for n in os.environ if n.startswith(("AITK_", "INFERENCE_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(("AITK_", "INFERENCE_")) and not name.startswith("AITK_SSL"):
            monkeypatch.setenv(name, value)
    return ServerSettings()


@pytest.mark.timeout(120)
def test_two_adapters_and_the_base_from_the_parameters_to_the_server(local_cloud, local_factory, local_project,
                                                                      tiny_model, second_adapter, monkeypatch):
    out = deploy(local_factory, "rg1", local_project, modelPath="/mount/models/base", adapters=ADAPTERS,
                 serveBase=True)
    share = _share(local_factory, out)
    upload_folder(share, tiny_model.model_dir, "models/base")
    upload_folder(share, tiny_model.adapter_dir, "adapters/tuned")
    upload_folder(share, second_adapter, "adapters/second")

    mount, env = _replica_env(local_cloud, local_factory, out)
    assert env["AITK_ADAPTER_PATH"] == f"tuned={mount}/adapters/tuned,second={mount}/adapters/second"
    assert (env["AITK_ADAPTER_NAME"], env["AITK_SERVE_BASE"]) == ("", "True")
    settings = _server_settings(monkeypatch, env)
    check_paths(settings)
    assert settings.serve_base and settings.adapter_ids == [("tuned", mount / "adapters/tuned"),
                                                            ("second", mount / "adapters/second")]
    loaded = load_model(settings.model_copy(update={"threads": 1, "device": "cpu"}))
    assert list(loaded.served) == ["tuned", "second", "base"] and not loaded.merged

    # Without the new parameters: AI Toolkit's single adapter, merged, as before.
    out = deploy(local_factory, "rg1", local_project, modelPath="/mount/models/base",
                 adapterPath="/mount/adapters/second", adapterName="my-lora")
    mount, env = _replica_env(local_cloud, local_factory, out)
    assert (env["AITK_ADAPTER_PATH"], env["AITK_ADAPTER_NAME"]) == (f"{mount}/adapters/second", "my-lora")
    assert env["AITK_SERVE_BASE"] == "False"
    settings = _server_settings(monkeypatch, env)
    check_paths(settings)
    assert not settings.serve_base and settings.adapter_ids == [("my-lora", mount / "adapters/second")]
    assert settings.merge_default(quantized=False)


def test_a_local_cloud_given_a_model_keeps_the_adapters_on_the_share(make_local_cloud, local_project, tiny_model,
                                                                      second_adapter):
    # --model without --adapter: the template's adapters stay when they are all on the share.
    cloud = make_local_cloud(model_path=tiny_model.model_dir)
    factory = ClientFactory(cloud.endpoints, cloud.credential())
    out = deploy(factory, "rg1", local_project, adapters=ADAPTERS)
    share = _share(factory, out)
    upload_folder(share, tiny_model.adapter_dir, "adapters/tuned")
    mount, env = _replica_env(cloud, factory, out)
    assert "AITK_NO_ADAPTER" in env and "AITK_ADAPTER_PATH" not in env  # one of the two is missing
    upload_folder(share, second_adapter, "adapters/second")
    mount, env = _replica_env(cloud, factory, out)
    assert "AITK_NO_ADAPTER" not in env
    assert env["AITK_ADAPTER_PATH"] == f"tuned={mount}/adapters/tuned,second={mount}/adapters/second"
