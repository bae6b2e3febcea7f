"""Where wbcap looks for the files a user brings (body models, checkpoints).

Search order for each kind of file: explicit argument -> environment variable -> the user data
directory (``platformdirs``). ``WBCAP_HOME`` moves the whole user data directory (useful for
tests and shared installs).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "WBCAP_HOME"
ENV_BODY_MODELS = "WBCAP_BODY_MODELS"
ENV_WEIGHTS = "WBCAP_WEIGHTS"
ENV_OFFLINE = "WBCAP_OFFLINE"
ENV_MIRROR = "WBCAP_WEIGHTS_MIRROR"


def user_data_dir() -> Path:
    """The per-user data directory (``$WBCAP_HOME`` or the platformdirs default)."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("wbcap", appauthor=False))


def body_models_dir() -> Path:
    """Default folder for body-model files: ``<user data>/body_models``."""
    return user_data_dir() / "body_models"


def weights_dir() -> Path:
    """Default folder for network checkpoints: ``<user data>/weights``."""
    return user_data_dir() / "weights"


def env_path(name: str) -> Path | None:
    """The path in environment variable ``name``, or None when unset/empty."""
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def offline_from_env() -> bool:
    """True when ``$WBCAP_OFFLINE`` is set to anything but empty, ``0``, ``false`` or ``no``:
    wbcap then never downloads on its own (``wbcap weights fetch`` still does when asked)."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def download_url(file_name: str, official_url: str) -> str:
    """Where to download ``file_name`` from: ``$WBCAP_WEIGHTS_MIRROR/<file_name>`` when the
    variable holds a base URL (``https://…``, ``http://…`` or ``file:///…``, e.g. a site
    mirror or a folder on a shared drive), else ``official_url``."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    return f"{mirror.rstrip('/')}/{file_name}" if mirror else official_url
