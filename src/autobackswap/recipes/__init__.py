"""Recipes: named sets of settings in TOML files (``--recipe NAME|FILE``).

A recipe has up to four sections (tables):

* ``[experiment]``: experiment settings (``image_size``, ``methods``, ``seeds``, ``drop_minority``, ...);
* ``[train]``: classifier training settings (the fields of ``TrainConfig``);
* ``[pipeline]``: the AutoBackSwap pipeline's flat options (``grid``, ``t_tight``, ``detector_backbone``, ...);
* ``[paper]``: figures a paper reports for these settings (shown beside the results; not settings).

Named recipes ship in this package (``recipes/<name>.toml``). :func:`load_recipe` reads one and checks
its sections; the keys inside them are checked where the settings are resolved
(:func:`autobackswap.settings.resolve`), each error one line naming the file and the key. Explicit
command-line flags override a recipe's values.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import AutoBackSwapError, DataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RECIPE_DIR = Path(__file__).resolve().parent
SECTIONS = ("experiment", "train", "pipeline", "paper")


def recipe_names() -> list[str]:
    """The named recipes that ship with the package."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """The file of a named recipe, or ``name_or_path`` itself when it is a path to a TOML file."""
    text = str(name_or_path).strip()
    if text in recipe_names():
        return RECIPE_DIR / f"{text}.toml"
    path = Path(text).expanduser()
    if path.suffix.lower() == ".toml" or "/" in text or "\\" in text or path.exists():
        if not path.is_file():
            raise DataError(path, "recipe file not found")
        return path
    raise AutoBackSwapError(f"unknown recipe {text!r}; named recipes: {', '.join(recipe_names())} "
                            "(or give the path of a .toml file)")


def load_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """A recipe as ``{"name", "path", "experiment": {...}, "train": {...}, "pipeline": {...}, "paper": {...}}``.

    An unknown name, a missing file, invalid TOML, an unknown section or a section that is not a table
    is one error naming the file."""
    path = recipe_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DataError(path, f"not a valid TOML file ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the recipe ({exc})") from None
    for section, value in data.items():
        if section not in SECTIONS:
            raise DataError(path, f"unknown section [{section}]; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise DataError(path, f"[{section}] must be a table of settings, got {type(value).__name__}")
    name = path.stem if path.parent == RECIPE_DIR else str(path)
    return {"name": name, "path": str(path), **{s: dict(data.get(s, {})) for s in SECTIONS}}


__all__ = ["RECIPE_DIR", "SECTIONS", "load_recipe", "recipe_names", "recipe_path"]
