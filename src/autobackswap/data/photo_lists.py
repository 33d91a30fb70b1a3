"""Curated file lists for the TuxBirds photo benchmark, chosen by looking at every image.

Paths are relative to the root of each unpacked Debian package (what ``dpkg -x PACKAGE.deb DIR``
writes), so they also resolve against ``/`` when the packages are installed system-wide. Versions
looked at (Debian 12): tuxpaint-stamps-default 2022.06.04-1, tuxpaint-data 0.9.28,
lomiri-wallpapers-16.04 20.04.0-2, mate-backgrounds 1.26.0-1, plasma-workspace-wallpapers 5.27.5-2.

**Birds** (``y``): photo cut-outs with an alpha channel from ``tuxpaint-stamps-default``.
``y = 1`` water birds (ducks, geese, herons, pelican, penguins, gulls, flamingo), ``y = 0`` land birds.
Left out: ``albino_peahen`` (its cut-out keeps a patch of grass, a land cue inside the foreground),
``crowned_crane`` (a bird of wetlands and grassland alike), ``cartoon/*`` and the Easter
``bluebird`` (drawings, not photos).

**Backgrounds** (``place``): real photos, ``place = 1`` water, ``place = 0`` land. Each entry has a
``box`` (x0, y0, x1, y1 as fractions of width and height): random crops are drawn inside it, which
keeps e.g. the sky or a thin strip of sea out of a land crop. ``lomiri-wallpapers-16.04`` and
``mate-backgrounds`` hold only one clear water photo (``Aqua``), so two more packages add water
(and some land): the Tux Paint photo templates in ``tuxpaint-data`` and the photos among
``plasma-workspace-wallpapers``. Left out, as neither clearly water nor clearly land: lomiri's
``Bridge`` (sky and bridge cables over tidal flats), mate's ``Storm`` (sky over a road), ``Wood``
(planks), the flower close-ups ``FreshFlower``, ``YellowFlower``, ``Garden``, ``TwoWings``, the
indoor and abstract wallpapers; templates ``rocks`` (could be a shore), ``cliff``, ``mudstone``,
bark close-ups, sky views (``trees_above``, ``trees_at_dusk``, ``sun_behind_clouds``),
``lighthouse``, ``spiders_web``, ``wool_mill_machine``; plasma's ``BytheWater``, ``ColdRipple``,
``EveningGlow`` (a jetty or boats fill the frame, water is a thin strip) and its drawings.
"""

from __future__ import annotations

from dataclasses import dataclass

STAMPS = "tuxpaint-stamps-default"
TEMPLATES = "tuxpaint-data"
LOMIRI = "lomiri-wallpapers-16.04"
MATE = "mate-backgrounds"
PLASMA = "plasma-workspace-wallpapers"

Box = tuple[float, float, float, float]
FULL: Box = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class BirdSpec:
    """A bird cut-out: an RGBA image whose alpha channel is the ground-truth mask."""

    name: str
    y: int  # 1 = water bird, 0 = land bird
    package: str
    path: str  # relative to the unpacked package root


@dataclass(frozen=True)
class BackgroundSpec:
    """A background photo; crops are drawn inside ``box`` (fractions x0, y0, x1, y1)."""

    name: str
    place: int  # 1 = water, 0 = land
    package: str
    path: str
    box: Box = FULL


_BIRD_DIR = "usr/share/tuxpaint/stamps/animals/birds"

WATER_BIRDS: tuple[str, ...] = (
    "drake", "duck", "gander", "heron_greatblue", "heron_greatblue_flying", "little-penguin",
    "magellanic_penguin", "pelican", "penguin", "pink_flamingo", "seagull", "silver-gull",
)
LAND_BIRDS: tuple[str, ...] = (
    "adelaide-rosella", "blackbird", "chicken_profile", "crow", "cuckoo", "guineafowl",
    "helmeted_guineafowl", "hen", "lark", "magpie", "nandou", "ostrich", "owl", "peacock", "pigeon",
    "quetzal", "rainbow-lorikeet", "rooster", "tucan", "turkey", "vulture",
)

CURATED_BIRDS: tuple[BirdSpec, ...] = tuple(
    BirdSpec(name, y, STAMPS, f"{_BIRD_DIR}/{name}.png")
    for y, names in ((1, WATER_BIRDS), (0, LAND_BIRDS))
    for name in names
)

_LOMIRI_DIR = "usr/share/backgrounds"
_MATE_DIR = "usr/share/backgrounds/mate/nature"
_TEMPLATE_DIR = "usr/share/tuxpaint/templates"


def _plasma(name: str) -> str:
    return f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg"


CURATED_BACKGROUNDS: tuple[BackgroundSpec, ...] = (
    # water (place = 1)
    BackgroundSpec("Aqua", 1, MATE, f"{_MATE_DIR}/Aqua.jpg"),
    BackgroundSpec("ocean_splash", 1, TEMPLATES, f"{_TEMPLATE_DIR}/ocean_splash.jpg"),
    BackgroundSpec("ocean_waves", 1, TEMPLATES, f"{_TEMPLATE_DIR}/ocean_waves.jpg"),
    BackgroundSpec("jellyfish", 1, TEMPLATES, f"{_TEMPLATE_DIR}/jellyfish.jpg"),
    BackgroundSpec("DarkestHour", 1, PLASMA, _plasma("DarkestHour"), (0.0, 0.62, 1.0, 1.0)),
    BackgroundSpec("summer_1am", 1, PLASMA, _plasma("summer_1am"), (0.0, 0.64, 1.0, 1.0)),
    # land (place = 0)
    BackgroundSpec("aitzgorri", 0, LOMIRI, f"{_LOMIRI_DIR}/aitzgorri_by_Aitzol_Berasategi.jpg", (0.0, 0.42, 1.0, 1.0)),
    BackgroundSpec("picosdeeuropa", 0, LOMIRI, f"{_LOMIRI_DIR}/picosdeeuropa_by_Aitzol_Berasategi.jpg", (0.0, 0.7, 1.0, 1.0)),
    BackgroundSpec("seeding", 0, LOMIRI, f"{_LOMIRI_DIR}/seeding_by_Clements_Engelhardt.jpg", (0.0, 0.12, 1.0, 1.0)),
    BackgroundSpec("sunset", 0, LOMIRI, f"{_LOMIRI_DIR}/sunset_by_Aitzol_Berasategi.jpg", (0.04, 0.62, 1.0, 1.0)),
    BackgroundSpec("Dragonfly", 0, LOMIRI, f"{_LOMIRI_DIR}/Dragonfly_by_Bolly.jpg"),
    BackgroundSpec("life", 0, LOMIRI, f"{_LOMIRI_DIR}/life_by_Aitzol_Berasategi.jpg", (0.0, 0.0, 1.0, 0.32)),
    BackgroundSpec("GreenMeadow", 0, MATE, f"{_MATE_DIR}/GreenMeadow.jpg"),
    BackgroundSpec("Blinds", 0, MATE, f"{_MATE_DIR}/Blinds.jpg"),
    BackgroundSpec("RainDrops", 0, MATE, f"{_MATE_DIR}/RainDrops.jpg"),
    BackgroundSpec("LadyBird", 0, MATE, f"{_MATE_DIR}/LadyBird.jpg"),
    BackgroundSpec("Dune", 0, MATE, f"{_MATE_DIR}/Dune.jpg", (0.0, 0.56, 1.0, 1.0)),
    BackgroundSpec("corn_maze", 0, TEMPLATES, f"{_TEMPLATE_DIR}/corn_maze.jpg"),
    BackgroundSpec("mossy_log", 0, TEMPLATES, f"{_TEMPLATE_DIR}/mossy_log.jpg"),
    BackgroundSpec("redwoods_above", 0, TEMPLATES, f"{_TEMPLATE_DIR}/redwoods_above.jpg"),
    BackgroundSpec("sheep", 0, TEMPLATES, f"{_TEMPLATE_DIR}/sheep.jpg", (0.0, 0.46, 1.0, 1.0)),
    BackgroundSpec("sun_behind_leaves", 0, TEMPLATES, f"{_TEMPLATE_DIR}/sun_behind_leaves.jpg"),
    BackgroundSpec("Path", 0, PLASMA, _plasma("Path")),
    BackgroundSpec("FallenLeaf", 0, PLASMA, _plasma("FallenLeaf")),
    BackgroundSpec("OneStandsOut", 0, PLASMA, _plasma("OneStandsOut")),
)

ASSET_PACKAGES: tuple[str, ...] = (STAMPS, TEMPLATES, LOMIRI, MATE, PLASMA)
