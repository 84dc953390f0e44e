"""The local cloud: Azure's ARM and Azure Files REST surfaces on https://127.0.0.1.

It lets ``aitk --local`` (and the tests) drive the real Azure SDK clients with no Azure at
hand: ARM (subscriptions, resource groups, template deployments with what-if, container
apps with revisions, replicas, secrets and a log stream), the Azure Files data plane over
real folders, container-app replicas run as local processes, and fault injection.

- :mod:`.server` -- ``LocalCloud`` (in-process; tests use it)
- :mod:`.daemon` -- ``ensure_running`` / ``status`` / ``stop`` (a detached server per state folder)
- :mod:`.credential` -- ``LOCAL_SUBSCRIPTION_ID``, ``LocalCredential``

Nothing here imports Textual; the Azure SDK is imported only where needed.
"""

from .credential import LOCAL_SUBSCRIPTION_ID, LocalCredential

__all__ = ["LOCAL_SUBSCRIPTION_ID", "LocalCredential"]
