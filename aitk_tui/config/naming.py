"""Azure naming rules and the description of every inference parameter.

``PARAMETER_SPECS`` drives validation (CLI ``params set``/``validate``), the TUI form
(one field per spec, with its description and rule) and the what-if pre-flight.
Rules are checked before anything is sent to Azure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

# Regions that offer Container Apps; GPU (serverless) regions are marked in GPU_LOCATIONS.
LOCATIONS: tuple[str, ...] = (
    "australiaeast", "brazilsouth", "canadacentral", "canadaeast", "centralindia",
    "centralus", "eastasia", "eastus", "eastus2", "francecentral", "germanywestcentral",
    "italynorth", "japaneast", "japanwest", "koreacentral", "northcentralus",
    "northeurope", "norwayeast", "polandcentral", "southafricanorth", "southcentralus",
    "southeastasia", "swedencentral", "switzerlandnorth", "uaenorth", "uksouth", "ukwest",
    "westcentralus", "westeurope", "westus", "westus2", "westus3",
)
# Regions where serverless GPU workload profiles were offered (azure-container-apps #1512).
GPU_LOCATIONS: frozenset[str] = frozenset({"westus3", "australiaeast", "swedencentral"})
GPU_PROFILE_TYPES: tuple[str, ...] = ("Consumption-GPU-NC24-A100", "Consumption-GPU-NC8as-T4")
# What one replica of each serverless GPU profile may use: (vCPU, GiB). Azure refuses a
# container app asking for more (ContainerAppInvalidResourceTotal). Microsoft Learn's
# workload-profiles table; the T4 profile is the NC8as_T4_v3 size (8 vCPU, 56 GiB).
GPU_PROFILE_SIZES: dict[str, tuple[int, int]] = {
    "Consumption-GPU-NC24-A100": (24, 220),
    "Consumption-GPU-NC8as-T4": (8, 56),
}


class NameError_(ValueError):
    """A value broke an Azure naming rule; the message says which rule."""


def _check(pattern: str, lo: int, hi: int, what: str, rule: str) -> Callable[[str], str]:
    rx = re.compile(pattern)

    def check(value: str) -> str:
        if not isinstance(value, str):
            raise NameError_(f"{what} must be text")
        if not (lo <= len(value) <= hi):
            raise NameError_(f"{what} must be {lo}-{hi} characters long (got {len(value)}); {rule}")
        if not rx.fullmatch(value):
            raise NameError_(f"{what} '{value}' is not valid: {rule}")
        return value

    return check


storage_account_name = _check(r"[a-z0-9]+", 3, 24, "Storage account name", "use lowercase letters and digits only")
_share = _check(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", 3, 63, "File share name",
                "use lowercase letters, digits and single hyphens, starting and ending with a letter or digit")


def file_share_name(value: str) -> str:
    _share(value)
    if "--" in value:
        raise NameError_(f"File share name '{value}' is not valid: it must not contain two hyphens in a row")
    return value


def _aca(what: str) -> Callable[[str], str]:
    inner = _check(r"[a-z][a-z0-9-]*[a-z0-9]", 2, 32, what,
                   "use lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen")

    def check(value: str) -> str:
        inner(value)
        if "--" in value:
            raise NameError_(f"{what} '{value}' is not valid: it must not contain two hyphens in a row")
        return value

    return check


container_app_name = _aca("Container app name")
environment_name = _aca("Container Apps environment name")
environment_storage_name = _check(r"[a-z0-9][a-z0-9-]*[a-z0-9]", 2, 32, "Environment storage name",
                                  "use lowercase letters, digits and hyphens")
log_analytics_name = _check(r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]", 4, 63, "Log Analytics workspace name",
                            "use letters, digits and hyphens, starting and ending with a letter or digit")
# A subscription id is a GUID (Azure's subscription resource: /subscriptions/{subscriptionId}).
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def subscription_id(value: str) -> str:
    if not isinstance(value, str) or not _GUID.fullmatch(value):
        raise NameError_(f"Subscription id {value!r} is not a GUID (such as 00000000-0000-0000-0000-000000000000)")
    return value
resource_group_name = _check(r"[-\w._()]*[-\w_()]", 1, 90, "Resource group name",
                             "use letters, digits, '-', '_', '.', '(' and ')', not ending with '.'")


def location(value: str) -> str:
    if value not in LOCATIONS:
        raise NameError_(f"Location '{value}' is not a known Azure region (for example: eastus, westus3, swedencentral)")
    return value


def instance_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise NameError_(f"Maximum instance count must be a whole number (got {value!r})") from None
    if value < 1:
        raise NameError_(f"Maximum instance count must be at least 1 (got {value})")
    if value > 100:
        raise NameError_(f"Maximum instance count must be at most 100 (got {value})")
    return value


def gpu_profile(value: str) -> str:
    if value not in GPU_PROFILE_TYPES:
        raise NameError_(f"GPU profile '{value}' is not one of: {', '.join(GPU_PROFILE_TYPES)}")
    return value


def container_cpu(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise NameError_(f"Container CPU must be a whole number of vCPUs (got {value!r})") from None
    if value < 1:
        raise NameError_(f"Container CPU must be at least 1 vCPU (got {value})")
    return value


_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Gi|Mi)")


def memory_gib(text: Any) -> float | None:
    """ACA's memory strings ("56Gi", "0.5Gi", "512Mi") as GiB; None when it is not one."""
    m = _MEMORY.fullmatch(str(text or "").strip())
    if not m:
        return None
    value = float(m.group(1))
    return value / 1024 if m.group(2) == "Mi" else value


def container_memory(value: Any) -> str:
    if not isinstance(value, str) or memory_gib(value) is None:
        raise NameError_(f"Container memory must be a size such as 56Gi or 512Mi (got {value!r})")
    if memory_gib(value) <= 0:
        raise NameError_(f"Container memory must be more than 0 (got {value!r})")
    return value.strip()


def resource_fit_error(profile: Any, cpu: Any, memory: Any) -> tuple[str, str] | None:
    """(parameter, why) when the container asks for more than ``profile`` offers; None when it fits
    or when the values are not readable (their own rules report that)."""
    size = GPU_PROFILE_SIZES.get(str(profile))
    if size is None:
        return None
    max_cpu, max_gib = size
    if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) and cpu > max_cpu:
        return ("containerCpu", f"{cpu} vCPU is more than the {profile} profile offers ({max_cpu} vCPU, "
                                f"{max_gib} GiB); use {max_cpu} or less")
    gib = memory_gib(memory)
    if gib is not None and gib > max_gib:
        return ("containerMemory", f"{memory} is more than the {profile} profile offers ({max_cpu} vCPU, "
                                   f"{max_gib} GiB); use {max_gib}Gi or less")
    return None


def fitting_resources(profile: str) -> dict[str, Any]:
    """The container size that uses the whole of ``profile``: {"containerCpu": 8, "containerMemory": "56Gi"}."""
    cpu, gib = GPU_PROFILE_SIZES[profile]
    return {"containerCpu": cpu, "containerMemory": f"{gib}Gi"}


def command_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise NameError_("Commands must be a non-empty list of non-empty command lines")
    return value


def share_path(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("/mount/") or ".." in value.split("/"):
        raise NameError_(f"Path '{value}' must be an absolute path under /mount/ (the mounted file share)")
    return value


def adapter_list(value: Any) -> list[str]:
    """Several adapters: NAME=PATH entries (PATH on the share), as the server reads them."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NameError_("Adapters must be a list of NAME=PATH entries")
    from inference_server.adapter_spec import parse_adapters  # the server's own reading of the list

    try:
        specs = parse_adapters(value)
    except ValueError as e:
        raise NameError_(f"Adapters: {e}") from None
    names: set[str] = set()
    for entry, spec in zip(value, specs):
        if spec.name is None:
            raise NameError_(f"Adapter '{entry}' is not NAME=PATH (NAME: letters, digits, '.', '_', ':', '-')")
        if spec.name in names:
            raise NameError_(f"Adapter name '{spec.name}' is used twice")
        names.add(spec.name)
        share_path(str(spec.path))
    # The container gets them joined with ",": they must read back as the same entries.
    if value and parse_adapters(",".join(value)) != specs:
        raise NameError_("Adapters: a path must not contain ',' followed by NAME=")
    return value


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise NameError_(f"The value must be true or false (got {value!r})")


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    label: str
    description: str
    kind: Literal["text", "int", "choice", "list", "bool"]
    check: Callable[[Any], Any]
    choices: tuple[str, ...] = ()
    default_hint: str = ""  # what a null value means (the template's default)
    nullable: bool = True


PARAMETER_SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("defaultCommands", "Start-up commands", "The commands the container runs to start the inference web API, in order; aitk stops at the first failing step.", "list", command_list, nullable=False),
    ParameterSpec("maximumInstanceCount", "Maximum instance count", "Maximum number of GPU replicas (instances); the app scales to zero when idle.", "int", instance_count, nullable=False),
    ParameterSpec("location", "Location", "Azure region for every resource.", "choice", location, choices=LOCATIONS, default_hint="the resource group's location"),
    ParameterSpec("storageAccountName", "Storage account", "Storage account holding the file share; the same as fine-tuning's by default.", "text", storage_account_name, default_hint="aistorage + 5 characters of the resource group id"),
    ParameterSpec("fileShareName", "File share", "File share mounted at /mount (code, model cache and adapters).", "text", file_share_name, default_hint="aifileshare + suffix"),
    ParameterSpec("acaEnvironmentName", "Container Apps environment", "Managed environment with the GPU workload profile.", "text", environment_name, default_hint="aienv + suffix"),
    ParameterSpec("acaEnvironmentStorageName", "Environment storage", "Name of the share's registration in the environment.", "text", environment_storage_name, default_hint="aienvstorage + suffix"),
    ParameterSpec("acaAppName", "Container app", "The inference container app.", "text", container_app_name, default_hint="aiacaapp + suffix"),
    ParameterSpec("acaLogAnalyticsName", "Log Analytics workspace", "Workspace receiving the app's logs.", "text", log_analytics_name, default_hint="ailog + suffix"),
    ParameterSpec("gpuProfileType", "GPU profile", "Serverless GPU workload profile (only settable when the environment is created).", "choice", gpu_profile, choices=GPU_PROFILE_TYPES, default_hint="Consumption-GPU-NC24-A100"),
    ParameterSpec("containerCpu", "Container CPU (vCPU)", "vCPUs for the inference container; at most the GPU profile's (T4: 8, A100: 24).", "int", container_cpu, default_hint="24 (the A100's)"),
    ParameterSpec("containerMemory", "Container memory", "Memory for the inference container, e.g. 56Gi; at most the GPU profile's (T4: 56Gi, A100: 220Gi).", "text", container_memory, default_hint="220Gi (the A100's)"),
    ParameterSpec("modelPath", "Base model path", "Folder of the base model on the share.", "text", share_path, default_hint="/mount/model-cache/microsoft/Phi-3-mini-4k-instruct"),
    ParameterSpec("adapterPath", "Adapter path", "Folder of the LoRA adapter on the share.", "text", share_path, default_hint="/mount/models/qlora/qlora/gpu_model/adapter"),
    ParameterSpec("adapters", "Adapters", "Several LoRA adapters on the one base, one NAME=PATH per line (PATH on the share); each answers as model NAME. Empty: the adapter path above alone.", "list", adapter_list, default_hint="the adapter path alone"),
    ParameterSpec("serveBase", "Serve the base model", "Also answer as the base model (the adapters then stay unmerged, a little slower).", "bool", flag, choices=("true", "false"), default_hint="false"),
)
SPECS_BY_NAME: dict[str, ParameterSpec] = {s.name: s for s in PARAMETER_SPECS}
