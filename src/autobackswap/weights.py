"""Weight files: read them in the common formats, load them strictly, and say what a file that does not fit is.

The one loader behind every weight file the package takes: the classifier's ``--pretrained FILE`` and
``--model-weights``, and the detector's ``weights``. A partial load is an error, never a warning.

* **Formats.** ``torch.save`` files (``.pt``, ``.pth``, ``.bin``, ``.ckpt``): a bare state dict, or a checkpoint
  holding one under ``state_dict`` / ``model`` / ... (autobackswap's own classifier and detector checkpoints
  included); and ``.safetensors``. Pickled Python objects other than tensors are refused (``weights_only``).
* **Accepted on purpose**, each said in a log line: the ``module.`` prefix of a DDP checkpoint (and ``_orig_mod.``
  of ``torch.compile``); a classification head that is missing or of another size (the model keeps its fresh
  head); the reference network's classifier when the model has no use for it (a detector built on an ImageNet
  network); BatchNorm's ``num_batches_tracked``, which old torchvision files lack.
* **Anything else** (a missing or unexpected key, a tensor of another shape) is one
  :class:`~autobackswap.errors.AutoBackSwapError` line naming the file, the first keys, and what the file looks
  like: an autobackswap classifier or detector checkpoint, a DDP checkpoint, another architecture or size, or not
  a checkpoint at all.

A model says how reference-format files (torchvision's or timm's key names) map onto its own keys with a
``weight_plan()`` method returning a :class:`KeyPlan` (the networks of :mod:`autobackswap.hub` do). Without one,
its keys are taken as they are, and the keys of its ``head`` module are the optional classification head.

Run keys and caches name a weight file by its content (:func:`weights_key`), never by its path, so a file replaced
under the same name is a new input.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from .errors import AutoBackSwapError, DataError
from .io import file_digest

log = logging.getLogger(__name__)

SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
CONTAINERS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")  # where checkpoints keep one
PREFIXES = {"module.": "a DDP checkpoint", "_orig_mod.": "a torch.compile checkpoint"}
SHOWN = 3  # keys named in an error


def is_weight_file(value: str) -> bool:
    """Whether a ``--pretrained`` / ``--model-weights`` / detector ``weights`` value names a file (a known suffix,
    a path separator, or an existing file); otherwise it is a tag such as ``IMAGENET1K_V1`` or ``resnet50.tv_in1k``."""
    return Path(value).suffix.lower() in SUFFIXES or "/" in value or os.sep in value or Path(value).is_file()


def split_pretrained(value: str | None) -> tuple[str | None, str | None]:
    """``(tag, file)`` of a TAG|FILE value: one of them set, or neither."""
    if not value:
        return None, None
    return (None, value) if is_weight_file(value) else (value, None)


def weights_key(value: str | None) -> str | None:
    """What a result depends on: ``file:<content digest>`` for a weight file (not its path), ``tag:<tag>`` for a
    tag, ``None`` for none (so configs without weights keep their keys)."""
    tag, path = split_pretrained(value)
    if path is not None:
        if not Path(path).is_file():
            raise DataError(path, "weight file not found")
        return f"file:{file_digest(path)}"
    return None if tag is None else f"tag:{tag}"


@dataclass(frozen=True)
class KeyPlan:
    """How a file's keys map onto a model's: ``aliases`` (a key as the reference torchvision / timm network names
    it -> the model's key), ``optional`` (the model's keys that may keep their fresh values: its classification
    head) and ``unused`` (reference keys the model has no use for, dropped on purpose)."""

    aliases: Mapping[str, str] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    unused: frozenset[str] = frozenset()


def head_keys(model: nn.Module, prefix: str = "head.") -> frozenset[str]:
    return frozenset(k for k in model.state_dict() if k.startswith(prefix))


def weight_plan(model: nn.Module) -> KeyPlan:
    plan = getattr(model, "weight_plan", None)
    return plan() if callable(plan) else KeyPlan(optional=head_keys(model))


@dataclass
class WeightFile:
    """A weight file's state dict (unwrapped, prefixes stripped) and what the file was."""

    path: Path
    state: dict[str, torch.Tensor]
    checkpoint: str | None = None  # "classifier" / "detector": an autobackswap checkpoint
    model: str | None = None  # that checkpoint's model (classifier) or backbone (detector)
    container: str | None = None  # the entry of the checkpoint the state dict came from
    stripped: list[str] = field(default_factory=list)  # prefixes removed from every key


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def _is_state(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_torch_file(path: str | Path, what: str, weights_only: bool = True) -> Any:
    """``torch.load`` of a file a user named (CPU tensors): the one place the package unpickles one (weight files,
    classifier and detector checkpoints). A missing, truncated or foreign file is one :class:`DataError` naming it
    and what was expected, never an unpickler traceback."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise DataError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise DataError(path, f"is a folder, not a {what}") from None
    except pickle.UnpicklingError as exc:
        if weights_only and "unsupported global" in str(exc).lower():
            raise DataError(path, "holds pickled Python objects besides tensors (a whole pickled model?): save "
                                  "model.state_dict() and pass that file") from None
        raise DataError(path, f"cannot read {what}: not a checkpoint at all (not a torch.save file)") from None
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle a user's file is "not a checkpoint"
        why = _first_line(exc) if str(exc).strip() else f"{type(exc).__name__}, the file is empty or cut short"
        raise DataError(path, f"cannot read {what}: not a checkpoint at all ({why})") from None


def read_weights(path: str | Path) -> WeightFile:
    """Read a weight file into a :class:`WeightFile`; a file that holds no state dict is a :class:`DataError`."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder, not a weight file")
    if not path.is_file():
        raise DataError(path, "weight file not found")
    if path.suffix.lower() == ".safetensors":
        try:
            return _strip(WeightFile(path, dict(safetensors.torch.load_file(str(path), device="cpu"))))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(path, f"not a checkpoint at all: not a readable safetensors file ({_first_line(exc)})") from None
    return _strip(_unwrap(path, load_torch_file(path, "weight file")))


def check_weights_file(value: str | None) -> None:
    """Refuse, before any work, a TAG|FILE value naming a weight file that is missing or holds no state dict
    (a tag is checked when it is fetched)."""
    _, path = split_pretrained(value)
    if path is not None:
        read_weights(path)


def _unwrap(path: Path, obj: Any) -> WeightFile:
    if isinstance(obj, Mapping):
        kind = obj.get("kind")
        if kind in ("classifier", "detector") and _is_state(obj.get("state_dict")):
            config = obj.get("config")
            name = config.get("model" if kind == "classifier" else "backbone") if isinstance(config, Mapping) else None
            return WeightFile(path, dict(obj["state_dict"]), str(kind), name, "state_dict")
        if _is_state(obj):
            return WeightFile(path, dict(obj))
        for key in CONTAINERS:
            if _is_state(obj.get(key)):
                return WeightFile(path, dict(obj[key]), container=key)
        if {"state", "param_groups"} <= set(obj):
            raise DataError(path, "not a state dict: an optimizer's state (keys state, param_groups)")
        keys = ", ".join(map(str, list(obj)[:SHOWN])) or "none"
        raise DataError(path, f"not a state dict: a dict without tensors under {'/'.join(CONTAINERS)} (keys: {keys})")
    if isinstance(obj, torch.Tensor):
        raise DataError(path, f"not a state dict: a single tensor of shape {tuple(obj.shape)}")
    raise DataError(path, f"not a state dict: a {type(obj).__name__}")


def _strip(wf: WeightFile) -> WeightFile:
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if wf.state and all(k.startswith(prefix) for k in wf.state):
                wf.state = {k[len(prefix):]: v for k, v in wf.state.items()}
                wf.stripped.append(prefix)
                changed = True
    return wf


def _keys(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")


def _looks_like(wf: WeightFile, own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                target: str, shape_only: bool) -> str:
    """What a file that does not fit looks like, for the error line."""
    if wf.checkpoint == "detector":
        what = "not classifier weights" if "classifier" in target else "of another backbone"
        return f"an autobackswap detector checkpoint (backbone {wf.model!r}), {what}"
    if wf.checkpoint == "classifier":
        what = "not detector weights" if "detector" in target else "of another model"
        return f"an autobackswap classifier checkpoint (model {wf.model!r}), {what}"
    ddp = [PREFIXES[p] + f" ({p!r} prefix, accepted)" for p in wf.stripped]
    if shape_only:
        kind = "the same architecture at another size (width, depth of a layer or number of classes)"
    else:
        shared = len(set(state) & set(own))
        keys = [k for k in wf.state if not k.endswith("num_batches_tracked")] or list(wf.state)
        kind = (f"another architecture ({shared} of its {len(wf.state)} key names are this model's; its first keys: "
                f"{_keys(keys)})")
        if any(k.startswith("net.") for k in keys) and any(k.startswith("head.") for k in keys):
            kind = "an autobackswap torchvision / timm model (net.* and head.* keys) of " + kind
        elif any(k.startswith("stem.") for k in keys) and any(k.startswith("layers.") for k in keys):
            kind = "an autobackswap built-in classifier (small_resnet / resnet18) state dict, " + kind
        elif any(k.startswith("context.") for k in keys) and any(k.startswith("blocks.") for k in keys):
            kind = "an autobackswap fcn detector state dict, " + kind
    return ", ".join(ddp + [kind])


def load_weights(model: nn.Module, path: str | Path, what: str = "weights", target: str = "the model") -> WeightFile:
    """Load the weight file ``path`` into ``model`` strictly (see the module docstring); ``what`` and ``target``
    name the two in messages (``"pretrained weights"``, ``"classifier 'tv:resnet50'"``). Returns what was read."""
    return load_weight_file(model, read_weights(path), what, target)


def load_weight_file(model: nn.Module, wf: WeightFile, what: str = "weights", target: str = "the model") -> WeightFile:
    """Load a weight file already read (:func:`read_weights`, or an offline source's converted file) into
    ``model``, strictly, as :func:`load_weights` does."""
    path = wf.path
    plan = weight_plan(model)
    own = model.state_dict()
    state = {(k if k in own else plan.aliases.get(k, k)): v for k, v in wf.state.items()}
    unused = [k for k in state if k not in own and k in plan.unused]
    for k in unused:
        state.pop(k)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    other_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    fresh = [k for k in missing + other_shape if k in plan.optional]
    missing = [k for k in missing if k not in plan.optional]
    other_shape = [k for k in other_shape if k not in plan.optional]
    if missing or unexpected or other_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_keys(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_keys(unexpected)})")
        if other_shape:
            k = other_shape[0]
            parts.append(f"{len(other_shape)} of another shape ({k}: file {tuple(state[k].shape)} vs model "
                         f"{tuple(own[k].shape)})")
        looks = _looks_like(wf, own, state, target, shape_only=not (missing or unexpected))
        raise AutoBackSwapError(f"{path}: {what} do not fit {target}: {'; '.join(parts)}; the file looks like {looks}")
    for prefix in wf.stripped:
        log.info("%s: stripped the %r prefix of every key (%s)", path, prefix, PREFIXES[prefix])
    if unused:
        log.info("%s: not using the file's classifier (%s): %s has its own head", path, _keys(unused), target)
    if fresh:
        why = ("the file has no classification head" if all(k not in state for k in fresh) else
               "the file's classification head is of another size (" +
               ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in fresh if k in state)[:200] + ")")
        log.info("%s: %s; the head of %s starts fresh (%s)", path, why, target, _keys(fresh))
    merged = {**{k: own[k] for k in fresh}, **{k: v for k, v in state.items() if k not in fresh}}
    for k in own:  # BatchNorm counters old files lack
        merged.setdefault(k, own[k])
    model.load_state_dict(merged, strict=True)
    log.info("%s: loaded %d tensors into %s", path, len(state) - len(fresh), target)
    return wf
