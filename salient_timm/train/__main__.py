"""``python -m salient_timm.train`` / ``torchrun -m salient_timm.train``."""

from .cli import main

if __name__ == "__main__":
    main()
