"""The one seam that builds models: ``ModelSpec(...).build()`` and ``ModelSpec.from_checkpoint(path)``.

A spec says what to build; ``build`` always does it in this order:

| step | what | how |
|---|---|---|
| 1 | the timm model (``salient_*`` / ``ssa_*`` included), or ``torchvision:NAME`` | ``timm.create_model(model, num_classes, in_chans)`` / ``torchvision.models.get_model`` |
| 2 | CIFAR stem | ``cifar_stem=True`` for our variants, ``convert_to_cifar_stem`` otherwise |
| 3 | weights | ``pretrained``: a file (safetensors, ``torch.save``, a salient-train ``best.pth``) or a timm tag; timm's loader with ``checkpoint_filter_fn`` |
| 4 | attention | ``inject_attention(model, attn, position, init, init_gain, stages=attn_stages, **attn_kwargs)`` (our variants: ``attn_kwargs`` go to their blocks) |
| 5 | frozen BatchNorm | ``freeze_bn`` |

A retrofitted model (attention injected, or a converted stem) is recorded as timm architecture
``salient_retrofit`` (``surgery/record.py``; rebuilt by ``models/salient_retrofit.py``), so timm's ``save_for_hf`` writes a folder that
``timm.create_model("local-dir:DIR", pretrained=True)`` rebuilds after ``import salient_timm``.

``salient-train``, ``salient-analyze`` (spec, claims, maps), the benchmarks and the evidence scripts all
build through it, so a model means the same everywhere. Errors are ``SalientError`` subclasses.
"""

import argparse
import dataclasses
import difflib
import functools
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

import timm
import torch
from timm.layers import freeze_batch_norm_2d
from timm.models import load_pretrained
from torch import nn

from .errors import SalientError, first_line
from .io.checkpoint import TrainCheckpoint
from .io.weights import CheckpointError, CheckpointNotFoundError, read_state_dict
from .models._filter import checkpoint_filter_fn
from .models.salient_resnet import VARIANTS
from .stem import convert_to_cifar_stem, has_cifar_stem
from .surgery import SurgeryStep, record_retrofit

__all__ = ["ModelSpec", "ModelSpecError", "check_model_name", "local_weights_overlay"]

_WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")
TORCHVISION = "torchvision:"


class ModelSpecError(SalientError, ValueError):
    """A spec that cannot be built (unknown torchvision model, unsupported option)."""


def check_model_name(name: str) -> str:
    """``name`` if timm knows the architecture (ours included, a ``.tag`` suffix allowed) or it is a
    ``torchvision:NAME`` torchvision knows; else ``ModelSpecError`` naming the closest three."""
    if name.startswith(TORCHVISION):
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        arch = name[len(TORCHVISION) :]
        if arch in known:
            return name
        close = difflib.get_close_matches(arch, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(TORCHVISION + c for c in close)}?" if close else ""
        raise ModelSpecError(f"unknown torchvision model {arch!r}{hint}")
    if timm.is_model(name):
        return name
    arch, _ = timm.models.split_model_name_tag(name)
    close = _closest(arch.lower())
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise ModelSpecError(f"unknown model {name!r}{hint}")


def _closest(name: str, n: int = 3) -> list:
    """The closest three timm model names: timm's own wildcard match (``list_models("*name*")``) first, then the
    nearest by spelling."""
    contained = timm.list_models(f"*{name}*")
    spelled = difflib.get_close_matches(name, timm.list_models(), n=n, cutoff=0.6)
    return list(dict.fromkeys(sorted(contained, key=len)[:n] + spelled))[:n]


def local_weights_overlay(path: str, model: str) -> Dict[str, Any]:
    """timm ``pretrained_cfg_overlay`` for a local weights file, with its head size and input channels.

    timm drops a checkpoint's head whenever its cfg's num_classes differs from the model's; stating the
    file's own head size keeps a fine-tuned head when the sizes agree. The file is read once per
    (path, size, modification time): building a model and labelling its step 0 share the result.
    """
    stat = os.stat(path)
    return dict(_read_overlay(path, stat.st_size, stat.st_mtime_ns, model))


@functools.lru_cache(maxsize=4)
def _read_overlay(path: str, size: int, mtime_ns: int, model: str) -> Tuple[Tuple[str, Any], ...]:
    state = read_state_dict(path)
    overlay: Dict[str, Any] = dict(file=path)
    cfg = timm.models.get_pretrained_cfg(model)
    head = f"{(cfg.classifier if cfg else None) or 'fc'}.weight"
    first = f"{(cfg.first_conv if cfg else None) or 'conv1'}.weight"
    if head in state:
        overlay["num_classes"] = state[head].shape[0]
    if first in state and state[first].ndim == 4:
        overlay["input_size"] = (state[first].shape[1], *(cfg.input_size[1:] if cfg else (224, 224)))
    return tuple(overlay.items())


@dataclass(frozen=True)
class ModelSpec:
    """What to build (see the module docstring for the order). ``attn_kwargs`` may be given as a dict."""

    model: str
    attn: str = "none"
    position: str = "post"
    init: str = "default"
    init_gain: float = 0.0
    cifar_stem: bool = False
    num_classes: Optional[int] = None
    in_chans: int = 3
    pretrained: Optional[str] = None
    freeze_bn: bool = False
    attn_kwargs: Tuple[Tuple[str, Any], ...] = field(default=())
    timm_kwargs: Tuple[Tuple[str, Any], ...] = field(default=())  # more timm.create_model options (global_pool, ...)
    attn_stages: Optional[Tuple[int, ...]] = None  # residual stages that get attention (1-based); None: all

    def __post_init__(self) -> None:
        for name in ("attn_kwargs", "timm_kwargs"):  # hashable, so specs can key caches
            value = getattr(self, name)
            if isinstance(value, Mapping):
                value = tuple(sorted(value.items()))
            object.__setattr__(self, name, tuple((k, _hashable(v)) for k, v in value))
        object.__setattr__(self, "attn_stages", _stages(self.attn_stages))
        if self.attn_stages is not None and self.attn.lower() == "none":
            raise ModelSpecError("attn_stages (--attn-stages) selects where --attn goes: give an attention kind too")

    @property
    def ours(self) -> bool:
        """A registered salient_*/ssa_* variant (its attention is built in, not injected)."""
        return timm.models.split_model_name_tag(self.model)[0] in VARIANTS

    @property
    def label(self) -> str:
        """``resnet50+salient``, ``resnet50+se@mid (retrofit)``, ``salient_resnet18``: for logs and titles."""
        if self.attn.lower() == "none":
            return self.model
        label = f"{self.model}+{self.attn}" + ("" if self.position == "post" else f"@{self.position}")
        if self.attn_stages is not None:
            label += f"[stages {','.join(map(str, self.attn_stages))}]"
        return label + (" (retrofit)" if self.pretrained and self.init == "identity" else "")

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    @property
    def surgery_step(self) -> Optional[SurgeryStep]:
        """The ``inject_attention`` call this spec makes on its base (``None``: no attention added)."""
        if self.attn.lower() == "none":
            return None
        return SurgeryStep.of(
            self.attn,
            position=self.position,
            kwargs=dict(self.attn_kwargs),
            init=self.init,
            init_gain=self.init_gain,
            stages=self.attn_stages,
        )

    def _timm_kwargs(self, load_weights: bool) -> Dict[str, Any]:
        kwargs: Dict[str, Any] = dict(self.timm_kwargs, in_chans=self.in_chans)
        if self.num_classes is not None:
            kwargs["num_classes"] = self.num_classes
        if self.ours:
            if self.cifar_stem:
                kwargs["cifar_stem"] = True
            if self.attn_kwargs:
                kwargs["attn_kwargs"] = dict(self.attn_kwargs)
        if self.pretrained and load_weights:
            if os.path.isfile(self.pretrained):
                kwargs["pretrained_cfg_overlay"] = local_weights_overlay(self.pretrained, self.model)
            elif os.path.sep in self.pretrained or self.pretrained.endswith(_WEIGHT_SUFFIXES):
                raise CheckpointNotFoundError(f"pretrained weights file not found: {self.pretrained}")
            else:
                kwargs["pretrained_cfg"] = self.pretrained
        return kwargs

    def build(self, device: Optional[str] = None, load_weights: bool = True) -> nn.Module:
        """The model, in train mode, on ``device`` (``"meta"``: shapes only). ``load_weights=False`` builds the
        same architecture (identity-started gates included) without reading ``pretrained``, e.g. to receive a
        checkpoint of the same run."""
        torchvision_base = self.model.startswith(TORCHVISION)
        kwargs = {} if torchvision_base else self._timm_kwargs(load_weights)
        with torch.device(device) if device else _no_device():
            if torchvision_base:
                model = self._torchvision_model(load_weights)
            elif "pretrained_cfg" in kwargs:
                model = _create_from_hub(self.model, kwargs)
            else:
                try:
                    model = timm.create_model(self.model, **kwargs)
                except TypeError as e:  # an argument the architecture does not take (e.g. --model-kwargs)
                    raise ModelSpecError(f"{self.model} does not take these arguments: {e}") from e
            converted = self.cifar_stem and not has_cifar_stem(model)
            if converted:
                convert_to_cifar_stem(model)
            if self.pretrained and load_weights and not torchvision_base and "pretrained_cfg" not in kwargs:
                load_pretrained(
                    model, num_classes=_num_classes(model), in_chans=self.in_chans, filter_fn=checkpoint_filter_fn
                )
            step = self.surgery_step
            if step is not None:  # (our variants take attn_kwargs at creation, above)
                (dataclasses.replace(step, kwargs=()) if self.ours else step).apply(model)
            features_only = dict(self.timm_kwargs).get("features_only", False)
            if not self.ours and not features_only and (converted or torchvision_base or step is not None):
                # reloadable from a hub folder (timm_kwargs: the base's own arguments, e.g. narrower channels)
                steps = [] if step is None else [step]
                record_retrofit(model, self.model, self.cifar_stem, steps, dict(self.timm_kwargs))
        if self.freeze_bn:
            model = freeze_batch_norm_2d(model)
        return model

    def _torchvision_model(self, load_weights: bool) -> nn.Module:
        """``torchvision:NAME``: torchvision's model (3 input channels); ``pretrained`` may be a local file."""
        import torchvision

        if self.in_chans != 3:
            raise ModelSpecError(f"{self.model}: torchvision models take 3 input channels, not {self.in_chans}")
        name = self.model[len(TORCHVISION) :]
        try:
            model = torchvision.models.get_model(name, num_classes=self.num_classes or 1000)
        except ValueError as e:
            raise ModelSpecError(f"unknown torchvision model {name!r}: {e}") from e
        if self.pretrained and load_weights:
            if not os.path.isfile(self.pretrained):
                raise CheckpointNotFoundError(f"pretrained weights file not found: {self.pretrained}")
            _load_dropping_other_head(model, checkpoint_filter_fn(read_state_dict(self.pretrained), model))
        return model

    @classmethod
    def from_run_options(cls, options: Mapping[str, Any], num_classes: int, in_chans: int) -> "ModelSpec":
        """The spec of a salient-train run from its options (``args.json``, a checkpoint's ``args``). A retrofit
        (pretrained weights, with ``--attn``) starts the attention at the identity (``--attn-init-gain`` 0) or near
        it. The weights: ``weights`` (the run's resolved ``--pretrained`` tag or ``--pretrained-path``); runs from
        before: ``pretrained``."""
        source = options.get("weights")
        if source is None and isinstance(options.get("pretrained"), str):
            source = options["pretrained"]
        retrofit = bool(source) and options["attn"] != "none"
        return cls(
            model=options["model"],
            attn=options["attn"],
            position=options["position"],
            init="identity" if retrofit else "default",
            init_gain=float(options.get("attn_init_gain") or 0.0) if retrofit else 0.0,
            cifar_stem=bool(options["cifar_stem"]),
            num_classes=num_classes,
            in_chans=in_chans,
            pretrained=source,
            freeze_bn=bool(options.get("freeze_bn", False)),
            timm_kwargs=tuple(sorted((options.get("model_kwargs") or {}).items())),
            attn_stages=options.get("attn_stages"),
        )

    @classmethod
    def from_train_args(cls, args: argparse.Namespace, num_classes: int, in_chans: int) -> "ModelSpec":
        """``from_run_options`` of the trainer's parsed options."""
        return cls.from_run_options(vars(args), num_classes, in_chans)

    @classmethod
    def from_checkpoint(cls, path: str) -> Tuple["ModelSpec", nn.Module, Dict[str, Any]]:
        """Rebuild a salient-train run's model from its checkpoint (options inside) and load its weights.

        Returns the spec, the model in eval mode, and the run's evaluation preprocessing as timm's data config
        (input size, interpolation, crop_pct, crop_mode, mean, std) with its class names (``label_names``).
        Raises ``CheckpointError`` (``TrainCheckpoint.read``'s, an older run's file, weights that do not fit).
        """
        checkpoint = TrainCheckpoint.read(path)
        options = checkpoint.args
        for key in ("num_classes", "in_chans", "data_mean", "data_std"):
            if options.get(key) is None:
                raise CheckpointError(f"{path} was written by an older salient-train without '{key}'")
        spec = cls.from_run_options(options, options["num_classes"], options["in_chans"])
        model = spec.build(load_weights=False)
        try:  # --model-ema: the moving average is what the run evaluated, chose and exports
            model.load_state_dict(checkpoint.weights)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights do not fit {options['model']}: {first_line(e)}") from e
        return spec, model.eval(), _recorded_data_config(options)


def _recorded_data_config(options: Mapping[str, Any]) -> Dict[str, Any]:
    """The run's evaluation preprocessing as timm's data config (``input_size``, ``interpolation``, ``crop_pct``,
    ``crop_mode``, ``mean``, ``std``) and its ``label_names``; runs from before it was recorded: the in-memory data
    sets' transform (no crop, bilinear)."""
    config = dict(options.get("data_config") or {})
    if not config:
        config = dict(
            input_size=(options["in_chans"], options["img_size"], options["img_size"]),
            interpolation="bilinear",
            crop_pct=1.0,
            crop_mode="center",
            mean=options["data_mean"],
            std=options["data_std"],
        )
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    names = options.get("class_names")
    if names:
        config["label_names"] = tuple(names)
    return config


def _load_dropping_other_head(model: nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Load a torchvision base's weights as timm loads a timm base's: a head of another size (``fc``) is left
    out and the model keeps its fresh ``num_classes`` head; any other mismatch is a ``CheckpointError``."""
    own = model.state_dict()
    other_head = [k for k in state if k.startswith("fc.") and k in own and state[k].shape != own[k].shape]
    if other_head:
        logging.getLogger(__name__).info(
            "pretrained head %s has %d classes: a new %d-class head",
            other_head[0],
            state["fc.weight"].shape[0],
            own["fc.weight"].shape[0],
        )
    try:
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in other_head}, False)
    except RuntimeError as e:
        raise CheckpointError(f"pretrained weights do not fit the model: {str(e).strip().splitlines()[-1]}") from e
    left = [k for k in missing if k not in other_head] + list(unexpected)
    if left:
        raise CheckpointError(f"pretrained weights do not fit the model: {', '.join(left[:5])}")


def _stages(value: Any) -> Optional[Tuple[Any, ...]]:
    """Stage numbers as a tuple: ``"1,2"`` (the CLIs' ``--attn-stages``), a list (args.json) or a tuple; flags
    (``(True, False, ...)``) are kept as they are. ``inject_attention`` checks them against the model's stages."""
    if value is None or isinstance(value, tuple):
        return value
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if not all(p.isdigit() for p in parts):
            raise ModelSpecError(f"attn stages {value!r}: give stage numbers separated by commas, e.g. 1,2")
        return tuple(int(p) for p in parts)
    return tuple(value)


def _hashable(value: Any) -> Any:
    """Lists (as JSON gives them back) as tuples, so a spec read from args.json equals the one that was saved."""
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def _num_classes(model: nn.Module) -> int:
    return int(getattr(model, "num_classes"))  # noqa: B009  (timm models set it; nn.Module does not declare it)


class _no_device:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


HUB_HOST = ("huggingface.co", 443)


def _hub_unavailable(name: str, tag: str) -> Optional[str]:
    """Why timm could not get ``name.tag``'s weights now (None: cached, or the hub answers within 3 s): checked before
    timm tries, whose downloads retry for about a minute when there is no network."""
    cfg = timm.models.get_pretrained_cfg(f"{timm.models.split_model_name_tag(name)[0]}.{tag}")
    if cfg is None or not cfg.hf_hub_id:
        return None  # an unknown tag or weights from a URL: timm's own error, below
    from huggingface_hub import constants, try_to_load_from_cache

    files = [f for f in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin") if f]
    if any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, f), str) for f in files):
        return None
    cache = constants.HF_HUB_CACHE
    if constants.HF_HUB_OFFLINE:
        return f"they are not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set"
    try:
        socket.create_connection(HUB_HOST, timeout=3).close()
    except OSError:
        return f"they are not in the Hugging Face cache ({cache}) and {HUB_HOST[0]} cannot be reached"
    return None


def _create_from_hub(name: str, kwargs: Dict[str, Any]) -> nn.Module:
    """``timm.create_model`` for a pretrained tag; any failure (unknown tag, no network) is one CheckpointError."""
    tag = kwargs["pretrained_cfg"]
    missing = _hub_unavailable(name, tag)
    if missing:
        raise CheckpointError(
            f"could not get pretrained weights {name}.{tag}: {missing}. Download them once with network access, "
            "or give a local weights file (salient-train --pretrained-path FILE; Python: ModelSpec(pretrained=FILE))"
        )
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # no page of retry warnings before the one-line error
    try:
        model = timm.create_model(name, **kwargs)
        load_pretrained(
            model, num_classes=_num_classes(model), in_chans=kwargs["in_chans"], filter_fn=checkpoint_filter_fn
        )
        return model
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  unknown tag, offline, hub errors
        reason = first_line(e).rstrip(".")
        if "Invalid pretrained tag" in reason:
            tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name}.*")]
            raise CheckpointError(
                f"unknown pretrained tag {tag!r} for {name}; valid: {', '.join(tags) or 'none'}"
            ) from e
        raise CheckpointError(
            f"could not get pretrained weights {name}.{tag}: {reason}. Without network access, "
            "pass a local weights file instead"
        ) from e
    finally:
        hub_logger.setLevel(level)
