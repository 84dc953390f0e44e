"""One factory for every Azure SDK client.

The real cloud and the local cloud differ only by :class:`CloudEndpoints` (ARM URL, how
a storage account's Files URL is formed, the CA bundle) and the credential. SDK modules
are imported on first use so that ``aitk`` starts fast.
"""

from __future__ import annotations

from typing import Any

# The endpoints type is shared with the local cloud, so it lives in a neutral module.
from ..endpoints import ARM_SCOPE, CloudEndpoints


class ClientFactory:
    """Builds SDK clients for one cloud and one credential (any ``get_token`` object)."""

    def __init__(self, endpoints: CloudEndpoints, credential: Any) -> None:
        self.endpoints = endpoints
        self.credential = credential

    def _mgmt_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "base_url": self.endpoints.arm_url,
            "credential_scopes": [ARM_SCOPE],
        }
        if self.endpoints.ca_bundle:
            kw["connection_verify"] = self.endpoints.ca_bundle
        if self.endpoints.polling_interval is not None:
            kw["polling_interval"] = self.endpoints.polling_interval
        if self.endpoints.retry_backoff_factor is not None:
            kw["retry_backoff_factor"] = self.endpoints.retry_backoff_factor
        return kw

    def subscriptions(self):
        from azure.mgmt.resource.subscriptions import SubscriptionClient

        return SubscriptionClient(self.credential, **self._mgmt_kwargs())

    def resources(self, subscription_id: str):
        from azure.mgmt.resource.resources import ResourceManagementClient

        return ResourceManagementClient(self.credential, subscription_id, **self._mgmt_kwargs())

    def deployments(self, subscription_id: str):
        from azure.mgmt.resource.deployments import DeploymentsMgmtClient

        return DeploymentsMgmtClient(self.credential, subscription_id, **self._mgmt_kwargs())

    def container_apps(self, subscription_id: str):
        from azure.mgmt.appcontainers import ContainerAppsAPIClient

        return ContainerAppsAPIClient(self.credential, subscription_id, **self._mgmt_kwargs())

    def storage(self, subscription_id: str):
        from azure.mgmt.storage import StorageManagementClient

        return StorageManagementClient(self.credential, subscription_id, **self._mgmt_kwargs())

    def files_account_url(self, account: str) -> str:
        return self.endpoints.files_account_url.format(account=account)

    def share(self, account: str, share: str, account_key: str, **kw: Any):
        """A ShareClient authorised with the account key (listKeys), as AI Toolkit does."""
        from azure.storage.fileshare import ShareClient

        if self.endpoints.ca_bundle:
            kw.setdefault("connection_verify", self.endpoints.ca_bundle)
        if self.endpoints.retry_backoff_factor is not None:
            # Storage clients use their own ExponentialRetry (15 s + 3**n, +-3 s jitter), which
            # ignores retry_backoff_factor; scale it down the same way.
            factor = self.endpoints.retry_backoff_factor
            kw.setdefault("initial_backoff", factor)
            kw.setdefault("increment_base", factor)
            kw.setdefault("random_jitter_range", factor)
        return ShareClient(self.files_account_url(account), share, credential=account_key, **kw)
