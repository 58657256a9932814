"""salient-train: retrofit / fine-tune / train ResNets with attention, on one process or many (torchrun).

salient-train --model salient_resnet18 --cifar-stem --dataset digits --epochs 15 --out runs/digits
torchrun --nproc-per-node 2 -m salient_timm.train ...same arguments...
"""
