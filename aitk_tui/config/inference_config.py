"""``infra/inference.config.json``: the six AI Toolkit keys, nothing else.

Written by provisioning from the deployment outputs, or filled by hand ("manual
provisioning"); either works the same. ``ACA_APP_ENDPOINT`` is a bare host name as AI
Toolkit writes it (``https://`` is added when calling it); a full URL is accepted too.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import AitkError
from ..fsutil import atomic_write_text

KEYS = ("SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME",
        "ACA_APP_NAME", "ACA_APP_ENDPOINT")
#: What names the container app: enough to read, scale, wake or delete it.
APP_KEYS = ("SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "ACA_APP_NAME")
#: What names the file share (deploy, models upload).
SHARE_KEYS = ("SUBSCRIPTION_ID", "RESOURCE_GROUP_NAME", "STORAGE_ACCOUNT_NAME", "FILE_SHARE_NAME")


# C0 and C1 control characters, DEL included (ESC starts OSC 52 and OSC 0 sequences).
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))


def _loopback_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name rather than an address
        return False


class ConfigFileError(AitkError):
    """inference.config.json could not be read or is not the AI Toolkit shape; left untouched."""

    config_error = True


class InferenceConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    SUBSCRIPTION_ID: str | None = None
    RESOURCE_GROUP_NAME: str | None = None
    STORAGE_ACCOUNT_NAME: str | None = None
    FILE_SHARE_NAME: str | None = None
    ACA_APP_NAME: str | None = None
    ACA_APP_ENDPOINT: str | None = None

    @field_validator("ACA_APP_ENDPOINT")
    @classmethod
    def _endpoint_is_a_web_address(cls, value: str | None) -> str | None:
        """A host name or an https URL (http only on this machine), and nothing a terminal or a
        browser would act on: control characters reached the terminal raw through ``aitk
        snippet`` (OSC 52 set the clipboard), and "Open in browser" handed on any scheme."""
        if value is None or not value.strip():
            return value  # empty: not provisioned yet (endpoint_url is None)
        if any(ch in _CONTROL for ch in value) or any(ch.isspace() for ch in value.strip()):
            raise ValueError("holds control characters or spaces; it must be a host name or an https:// URL")
        url = value.strip()
        parts = urlsplit(url if "://" in url else f"https://{url}")
        try:
            parts.port
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        if parts.scheme.lower() not in ("https", "http") or not parts.hostname or parts.username is not None:
            raise ValueError(f"must be a host name or an https:// URL, not {value!r}")
        if parts.scheme.lower() == "http" and not _loopback_host(parts.hostname):
            raise ValueError("uses http off this machine; the endpoint must be https (http only on loopback)")
        return value

    @classmethod
    def load(cls, path: Path) -> "InferenceConfig":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigFileError("inference.config.json does not exist yet.",
                                  f"{path}: provision first, or fill the six keys by hand") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigFileError("inference.config.json is not valid JSON; it was left unchanged.", f"{path}: {e}") from None
        except RecursionError:
            raise ConfigFileError("inference.config.json is nested too deeply to be AI Toolkit's config; it was "
                                  "left unchanged.", str(path)) from None
        if not isinstance(raw, dict):
            raise ConfigFileError("inference.config.json must be a JSON object; it was left unchanged.", str(path))
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(map(str, first["loc"]))
            if first["type"] == "value_error":
                raise ConfigFileError(f"inference.config.json's {where} cannot be used; it was left unchanged.",
                                      f"{path}: {where} {first['ctx']['error']}") from None
            raise ConfigFileError("inference.config.json has a value of the wrong type; it was left unchanged.",
                                  f"{path}: {where}: {first['msg']}") from None

    def missing(self, *keys: str) -> list[str]:
        return [k for k in (keys or KEYS) if not getattr(self, k)]

    def invalid(self, *keys: str) -> list[str]:
        """Why each given name breaks Azure's naming rules (empty: all valid or absent).

        Names go into resource ids and request paths: a name such as ``x/../../other`` or
        ``..`` would address another resource once a client removes the dot segments."""
        from . import naming

        rules = {"SUBSCRIPTION_ID": naming.subscription_id, "RESOURCE_GROUP_NAME": naming.resource_group_name,
                 "STORAGE_ACCOUNT_NAME": naming.storage_account_name, "FILE_SHARE_NAME": naming.file_share_name,
                 "ACA_APP_NAME": naming.container_app_name}
        out = []
        for key in keys or KEYS:
            value = getattr(self, key)
            if value and key in rules:
                try:
                    rules[key](value)
                except naming.NameError_ as e:
                    out.append(f"{key}: {e}")
        return out

    def require(self, *keys: str) -> "InferenceConfig":
        """The keys are present, and each is a name Azure accepts (checked before any id is built)."""
        missing = self.missing(*keys)
        if missing:
            raise ConfigFileError(f"inference.config.json is missing {', '.join(missing)}.",
                                  "provision first, or fill the keys by hand (manual provisioning)")
        bad = self.invalid(*keys)
        if bad:
            raise ConfigFileError("inference.config.json names a resource Azure would not accept; aitk did not use "
                                  "it.", "; ".join(bad) + "; fix the file, or provision again to rewrite it")
        return self

    @property
    def endpoint_url(self) -> str | None:
        ep = (self.ACA_APP_ENDPOINT or "").strip().rstrip("/")
        if not ep:
            return None
        return ep if "://" in ep else f"https://{ep}"

    @property
    def from_local_cloud(self) -> bool:
        """Written by the local cloud (``--local``): its apps serve on loopback, no Azure app does.

        Told from the endpoint alone: the file keeps exactly AI Toolkit's six keys.
        """
        url = self.endpoint_url
        return bool(url) and _loopback_host(urlsplit(url).hostname or "")

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in KEYS}, indent=2) + "\n"

    def save(self, path: Path) -> None:
        """Atomic write of exactly the six keys; a corrupt existing file is not replaced."""
        path = Path(path)
        if path.exists():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                raise ConfigFileError("inference.config.json is not valid JSON, so it was not overwritten.",
                                      f"{path}: {e}; fix or delete it and run again") from None
        atomic_write_text(path, self.to_json())
