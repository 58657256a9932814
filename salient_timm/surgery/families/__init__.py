"""One module per timm (or torchvision) model file; importing this package registers every row.

| module | block classes |
|---|---|
| ``resnet`` | timm BasicBlock, Bottleneck (HRNet's branches too) |
| ``torchvision`` | torchvision BasicBlock, Bottleneck |
| ``resnetv2`` | PreActBasic, PreActBottleneck, Bottleneck |
| ``byobnet`` | BasicBlock, BottleneckBlock, DarkBlock, EdgeBlock, SelfAttnBlock (RepVggBlock, MobileOneBlock refused) |
| ``regnet`` | Bottleneck, PreBottleneck |
| ``res2net`` | Bottle2neck |
| ``resnest`` | ResNestBottleneck |
| ``sknet`` | SelectiveKernelBasic, SelectiveKernelBottleneck |
| ``senet`` | SEResNetBlock, SEResNetBottleneck, SEBottleneck, SEResNeXtBottleneck |
| ``tresnet`` | BasicBlock, Bottleneck |
| ``nfnet`` | NormFreeBlock |
| ``dla`` | DlaBasic, DlaBottleneck, DlaBottle2neck |
| ``cspnet`` | BottleneckBlock, DarkBlock, EdgeBlock |
"""

from . import (  # noqa: F401  (each module registers its rows)
    byobnet,
    cspnet,
    dla,
    nfnet,
    regnet,
    res2net,
    resnest,
    resnet,
    resnetv2,
    senet,
    sknet,
    torchvision,
    tresnet,
)
