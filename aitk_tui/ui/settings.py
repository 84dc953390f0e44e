"""The TUI's own preferences: theme, animations and the user's keymap.

Read from ``$XDG_CONFIG_HOME/aitk/tui.toml`` (platformdirs' user config folder), with
``AITK_TUI_*`` environment overrides. The keymap maps binding ids (see
:mod:`aitk_tui.ui.commands`) to keys, e.g.::

    theme = "textual-light"
    [keymap]
    provision = "f5,ctrl+g"
    "chat.stop" = "ctrl+x"

A file that does not parse never stops the app: defaults are used and the reason is
kept in :attr:`UISettings.load_error` so the app can say so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_THEME = "textual-dark"


def config_path() -> Path:
    """Where the settings file lives (honours XDG_CONFIG_HOME, read at call time)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "aitk" / "tui.toml"
    import platformdirs

    return platformdirs.user_config_path("aitk") / "tui.toml"


class UISettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AITK_TUI_", extra="ignore")

    theme: str = DEFAULT_THEME
    # Animations off by default: fewer redraws over ssh and on projectors.
    animations: bool = False
    keymap: dict[str, str] = Field(default_factory=dict)

    _load_error: str | None = PrivateAttr(default=None)
    _toml_path: ClassVar[Path | None] = None

    @property
    def load_error(self) -> str | None:
        return self._load_error

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        from pydantic_settings import TomlConfigSettingsSource

        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_path is not None and cls._toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_path))
        return tuple(sources)

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> "UISettings":
        """Settings from the file (if any) and the environment; defaults if unreadable."""
        path = path or config_path()
        UISettings._toml_path = path
        try:
            return cls(**overrides)
        except (ValidationError, ValueError, OSError) as e:  # tomllib.TOMLDecodeError is a ValueError
            UISettings._toml_path = None
            settings = cls(**overrides)
            settings._load_error = f"{path}: {str(e).splitlines()[0]}"
            return settings
        finally:
            UISettings._toml_path = None
