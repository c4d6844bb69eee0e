"""Pure nn.Module definitions, one file per family, plus their hyperparameter dataclasses. No I/O."""
