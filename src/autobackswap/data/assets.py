"""Offline photo assets: Debian packages fetched with ``apt-get download`` and unpacked with ``dpkg -x``.

Nothing is installed system-wide. The asset folder (``--assets``, default
``<user cache dir>/autobackswap/assets``) holds one unpacked folder per package::

    ASSETS/tuxpaint-stamps-default/usr/share/tuxpaint/stamps/animals/birds/duck.png
    ASSETS/mate-backgrounds/usr/share/backgrounds/mate/nature/Aqua.jpg
    ...

A file is looked up under ``ASSETS/<package>/`` first and then under ``ASSETS/`` itself, so a folder
into which all packages were unpacked together works too, and so does ``/`` when they are installed.
Each package is unpacked into a temporary folder and renamed into place when complete, so an
interrupted fetch never leaves a half-unpacked package, and a finished one is never fetched again.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote

from ..errors import AutoBackSwapError
from ..io import write_json

log = logging.getLogger(__name__)

PACKAGE_INFO = ".autobackswap-package.json"


def default_assets_dir() -> Path:
    """``<user cache dir>/autobackswap/assets``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("autobackswap")) / "assets"


def find_asset(assets: Path, package: str, relpath: str) -> Path | None:
    """The file ``relpath`` of ``package``: under ``assets/package/``, else under ``assets/``."""
    for base in (assets / package, assets):
        candidate = base / relpath
        if candidate.is_file():
            return candidate
    return None


def _manual_hint(packages: Iterable[str]) -> str:
    names = " ".join(sorted(set(packages)))
    return (
        f"get the Debian packages {names}, unpack each with `dpkg -x PACKAGE.deb DIR/PACKAGE` "
        "(or install them), and pass --assets DIR (a folder with one unpacked folder per package; "
        "use --assets / when the packages are installed)"
    )


def _require_tools(packages: Sequence[str]) -> None:
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise AutoBackSwapError(
            f"cannot fetch the photo assets: {' and '.join(missing)} not found on this machine; "
            + _manual_hint(packages)
        )


def _run(cmd: list[str], cwd: Path, package: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise AutoBackSwapError(f"cannot run {cmd[0]} for {package}: {exc}; " + _manual_hint([package])) from None
    if proc.returncode == 0:
        return
    detail = " ".join((proc.stderr or proc.stdout or "").split())[-400:]
    hint = ""
    if cmd[0] == "apt-get":
        hint = (" The package lists may be missing or stale: run `apt-get update` (as root) and try again,"
                " or " + _manual_hint([package]) + ".")
    raise AutoBackSwapError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}: {detail}.{hint}")


def fetch_package(package: str, assets: Path) -> Path:
    """Download ``package`` with ``apt-get download`` and unpack it to ``assets/package`` (atomic).

    A package folder that already exists is complete (it only appears by a rename) and is kept.
    """
    target = assets / package
    if target.is_dir():
        return target
    _require_tools([package])
    assets.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{package}.", suffix=".tmp", dir=assets))
    try:
        log.info("fetching Debian package %s into %s", package, assets)
        _run(["apt-get", "download", package], work, package)
        debs = sorted(work.glob(f"{package}_*.deb"))
        if len(debs) != 1:
            raise AutoBackSwapError(f"apt-get download {package} left {len(debs)} .deb files in {work}; expected 1")
        root = work / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)], work, package)
        parts = debs[0].name[: -len(".deb")].split("_")
        version = unquote(parts[1]) if len(parts) > 1 else "unknown"
        write_json(root / PACKAGE_INFO, {"package": package, "version": version, "deb": debs[0].name})
        try:
            os.rename(root, target)
        except OSError:
            if not target.is_dir():  # not a concurrent fetch that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def package_version(assets: Path, package: str) -> str | None:
    """The version recorded when ``package`` was fetched, or None (unpacked by hand, or installed)."""
    import json

    info = assets / package / PACKAGE_INFO
    if not info.is_file():
        return None
    try:
        return str(json.loads(info.read_text(encoding="utf-8")).get("version"))
    except (OSError, ValueError):
        return None


def prepare_assets(
    required: Sequence[tuple[str, str]], assets: str | Path | None = None, fetch: bool = True
) -> dict[tuple[str, str], Path]:
    """Locate every ``(package, relpath)`` in ``required``, fetching missing packages when allowed.

    Returns the path of each file. Raises :class:`AutoBackSwapError` naming the missing files, their
    packages, and how to provide them.
    """
    root = Path(assets) if assets is not None else default_assets_dir()
    packages = sorted({pkg for pkg, _ in required})

    def locate() -> tuple[dict[tuple[str, str], Path], list[tuple[str, str]]]:
        found: dict[tuple[str, str], Path] = {}
        missing: list[tuple[str, str]] = []
        for key in required:
            path = find_asset(root, *key)
            if path is None:
                missing.append(key)
            else:
                found[key] = path
        return found, missing

    found, missing = locate()
    if missing and fetch:
        to_fetch = sorted({pkg for pkg, _ in missing if not (root / pkg).is_dir()})
        if to_fetch:
            _require_tools(packages)
        for pkg in to_fetch:
            fetch_package(pkg, root)
        found, missing = locate()
    if missing:
        shown = ", ".join(f"{rel} ({pkg})" for pkg, rel in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        how = "Fetching is off (--no-fetch): drop it to fetch them with apt-get, or " if not fetch else "To fix, "
        raise AutoBackSwapError(
            f"photo assets not found under {root}: missing {shown}{more}. {how}"
            + _manual_hint(pkg for pkg, _ in missing)
            + ". A package folder that exists but lacks a file may hold another version: delete it to fetch again."
        )
    return found
