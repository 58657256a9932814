"""salient-timm: spatial attention add-ons (Salient, SSA, and timm's kinds) for ResNets.

``import salient_timm`` registers the ``salient_resnet*`` / ``ssa_resnet*`` variants in
timm's model registry, so ``timm.create_model("salient_resnet50")`` works.
"""

from importlib.metadata import PackageNotFoundError, version

from . import models  # noqa: F401  (registers salient_resnet*, ssa_resnet* and salient_retrofit in timm)
from .deploy.reparameterize import ReparameterizeError, reparameterize
from .errors import RunFolderError, SalientError
from .gates import capture_gates, gate_neutrals
from .io.weights import CheckpointError
from .layers import (
    IDENTITY_KINDS,
    AttentionArgumentError,
    ConstantGate,
    IdentityInitError,
    SalientBlock,
    ScaledSigmoid,
    SSABlock,
    UnknownAttentionKindError,
    attention_kinds,
    init_identity,
    resolve_attention,
)
from .models import VARIANTS
from .optim import attention_parameter_names, retrofit_defaults, retrofit_param_groups
from .spec import ModelSpec
from .stem import convert_to_cifar_stem
from .surgery import SurgeryError, attention_modules, find_residual_blocks, inject_attention

try:
    __version__ = version("salient-timm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "SalientBlock",
    "SSABlock",
    "ScaledSigmoid",
    "ConstantGate",
    "inject_attention",
    "find_residual_blocks",
    "attention_modules",
    "convert_to_cifar_stem",
    "reparameterize",
    "ReparameterizeError",
    "capture_gates",
    "gate_neutrals",
    "retrofit_param_groups",
    "attention_parameter_names",
    "retrofit_defaults",
    "resolve_attention",
    "attention_kinds",
    "init_identity",
    "IDENTITY_KINDS",
    "VARIANTS",
    "ModelSpec",
    "SalientError",
    "RunFolderError",
    "SurgeryError",
    "AttentionArgumentError",
    "UnknownAttentionKindError",
    "IdentityInitError",
    "CheckpointError",
    "__version__",
]
