"""A small price table for the serverless GPU profiles, and the cost estimate built on it.

No network: the figures are a snapshot, kept here with their source and date so that every
output can say where they came from. They are list prices as of ``PRICE_DATE``, written
into this table without a way to check them against the live page (no network where it was
written): check them on the pricing page, and update the table and ``PRICE_DATE`` together.
Everything computed here is an *estimate*: list prices (pay-as-you-go, USD, East US),
every replica counted as active the whole time (an idle replica may bill less), the
monthly free grants and any discount ignored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

PRICE_SOURCE = "Azure Container Apps pricing page (https://azure.microsoft.com/pricing/details/container-apps/)"
PRICE_DATE = "2025-06"  # when the figures below were taken from PRICE_SOURCE
PRICE_NOTE = ("pay-as-you-go list prices in USD for East US as of that date, not verified since: check the "
              "pricing page; other regions and currencies differ")
HOURS_PER_MONTH = 730  # Azure's pricing calculator's month
CURRENCY = "USD"

# Consumption meters, charged for a GPU replica's vCPUs and memory on top of its GPU.
VCPU_PER_SECOND = 0.000024
GIB_PER_SECOND = 0.000003


@dataclass(frozen=True)
class GpuPrice:
    profile: str
    gpu: str
    gpu_per_second: float  # one GPU-second
    vcpus: int  # what one replica of the profile gets when the app asks for no other size
    memory_gib: float


PRICES: dict[str, GpuPrice] = {p.profile: p for p in (
    GpuPrice("Consumption-GPU-NC24-A100", "NVIDIA A100", 0.000944, 24, 220.0),
    GpuPrice("Consumption-GPU-NC8as-T4", "NVIDIA T4", 0.000186, 8, 56.0),
)}


@dataclass(frozen=True)
class CostEstimate:
    """Per hour and per month (730 h) at the minimum and maximum replica counts."""

    profile: str
    gpu: str
    vcpus: float
    memory_gib: float
    min_replicas: int
    max_replicas: int
    per_replica_hour: float
    min_per_hour: float
    min_per_month: float
    max_per_hour: float
    max_per_month: float
    currency: str = CURRENCY
    source: str = PRICE_SOURCE
    price_date: str = PRICE_DATE
    label: str = "estimate"

    def lines(self) -> list[str]:
        """The estimate in words, each line saying it is one."""
        head = (f"estimate ({self.gpu}, {self.vcpus:g} vCPU, {self.memory_gib:g} GiB): "
                f"{money(self.per_replica_hour)}/h per running replica")
        idle = "scaled to zero: no GPU billing while idle" if self.min_replicas == 0 else \
            f"{self.min_replicas} always on"
        return [head,
                f"estimate at min {self.min_replicas} ({idle}): {money(self.min_per_hour)}/h, "
                f"{money(self.min_per_month)}/month",
                f"estimate at max {self.max_replicas}: {money(self.max_per_hour)}/h, "
                f"{money(self.max_per_month)}/month",
                f"prices: {self.source}, taken {self.price_date}; {PRICE_NOTE}"]

    def dialog_lines(self) -> list[str]:
        """Four short lines (under 76 columns) for the TUI's provision dialog."""
        idle = " (scales to zero: no GPU bill when idle)" if self.min_replicas == 0 else " (always on)"
        return [f"Cost estimate: {money(self.per_replica_hour)}/h per running {self.gpu} replica",
                f"  min {self.min_replicas}: {money(self.min_per_hour)}/h, {money(self.min_per_month)}/month{idle}",
                f"  max {self.max_replicas}: {money(self.max_per_hour)}/h, {money(self.max_per_month)}/month",
                f"List prices of {self.price_date} (USD, East US), unverified: see the pricing page."]

    def summary(self) -> str:
        return (f"Cost estimate: {money(self.min_per_month)}/month at min {self.min_replicas}, up to "
                f"{money(self.max_per_month)}/month at max {self.max_replicas} replicas "
                f"({money(self.per_replica_hour)}/h per running {self.gpu} replica; prices from the Azure "
                f"Container Apps pricing page, {self.price_date})")


def money(value: float) -> str:
    return f"${value:,.2f}"


def memory_gib(text: object) -> float | None:
    """ACA's memory strings ("220Gi", "0.5Gi", "512Mi") as GiB; None when unreadable."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(Gi|Mi|G|M)?\s*", str(text or ""))
    if not m:
        return None
    value = float(m.group(1))
    return value / 1024 if (m.group(2) or "Gi").startswith("M") else value


def estimate(profile: str, min_replicas: int, max_replicas: int, *, vcpus: float | None = None,
             memory: float | None = None) -> CostEstimate | None:
    """The estimate for ``profile`` (None for a profile the table does not price).

    ``vcpus``/``memory`` (GiB) are the container's own size when known, else the profile's."""
    price = PRICES.get(profile)
    if price is None:
        return None
    if not (0 <= min_replicas <= max_replicas):
        raise ValueError(f"replica counts must satisfy 0 <= min <= max, not {min_replicas}..{max_replicas}")
    cpu = price.vcpus if vcpus is None or not math.isfinite(vcpus) or vcpus <= 0 else vcpus
    mem = price.memory_gib if memory is None or not math.isfinite(memory) or memory <= 0 else memory
    hourly = 3600 * (price.gpu_per_second + cpu * VCPU_PER_SECOND + mem * GIB_PER_SECOND)
    return CostEstimate(profile=profile, gpu=price.gpu, vcpus=cpu, memory_gib=mem, min_replicas=min_replicas,
                        max_replicas=max_replicas, per_replica_hour=hourly,
                        min_per_hour=hourly * min_replicas, min_per_month=hourly * min_replicas * HOURS_PER_MONTH,
                        max_per_hour=hourly * max_replicas, max_per_month=hourly * max_replicas * HOURS_PER_MONTH)


def estimate_for_project(values: dict[str, object], template_path: Path) -> CostEstimate | None:
    """:func:`estimate_for_parameters` with the project's ARM template (``inference.json``);
    None when it cannot be read (the what-if reports a bad template; no estimate beats a wrong one).
    What the provision dialog and ``aitk provision`` both show."""
    import json

    try:
        template = json.loads(template_path.read_text(encoding="utf-8"))
        return estimate_for_parameters(values, template if isinstance(template, dict) else {})
    except (OSError, ValueError, RecursionError):
        return None


def estimate_for_parameters(values: dict[str, object], template: dict) -> CostEstimate | None:
    """The estimate for what a provision with these parameter values would create.

    ``values``: the parameters file's values (None = the template's default)."""
    defaults = {k: (v or {}).get("defaultValue") for k, v in (template.get("parameters") or {}).items()}

    def value(name: str) -> object:
        v = values.get(name)
        return defaults.get(name) if v is None else v

    scale = _template_scale(template)
    min_r = scale.get("minReplicas", 0)
    max_r = value("maximumInstanceCount")
    if not isinstance(min_r, int) or isinstance(max_r, bool) or not isinstance(max_r, int) or min_r > max_r:
        return None
    cpu = value("containerCpu")
    return estimate(str(value("gpuProfileType")), min_r, max_r,
                    vcpus=float(cpu) if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) else None,
                    memory=memory_gib(value("containerMemory")))


def _template_scale(template: dict) -> dict:
    for r in template.get("resources") or []:
        if isinstance(r, dict) and str(r.get("type", "")).lower() == "microsoft.app/containerapps":
            scale = ((r.get("properties") or {}).get("template") or {}).get("scale") or {}
            return scale if isinstance(scale, dict) else {}
    return {}
