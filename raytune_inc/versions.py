"""The versions of the packages a run depends on, as recorded in its fingerprint."""

from __future__ import annotations

from importlib import metadata


def package_version(name: str) -> str:
    """The installed version of distribution `name`, or "unknown" when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def package_versions(*names: str) -> dict[str, str]:
    """The installed versions of those of `names` that are installed."""
    return {name: version for name in names if (version := package_version(name)) != "unknown"}
