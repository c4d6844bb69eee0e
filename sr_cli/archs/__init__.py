"""One file per model family (the nn.Module, its frozen hyperparameter dataclass, its DESCRIPTOR), listed
in families.py; descriptor.py defines what a descriptor holds; runtime.py the generic SRNet view. No I/O."""
