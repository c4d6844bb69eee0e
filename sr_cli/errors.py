"""The exceptions sr raises for problems a user can fix.

Every message is one line that names the file (or option) at fault and says what to do.
The CLI maps each class to its exit code; library code never prints and never exits.
"""
from __future__ import annotations


class SRError(Exception):
    """Base class: a problem the user can fix. ``str(error)`` is the one-line message."""

    exit_code: int = 1


class UsageError(SRError):
    """Options that contradict each other or are out of range."""

    exit_code = 2


class InputError(SRError):
    """An input file or folder is missing, unreadable or not an image."""

    exit_code = 3


class OutputError(SRError):
    """An output cannot be written (exists without --overwrite, disk full, bad format for the data)."""

    exit_code = 4


class UnknownModelError(SRError):
    """A model name that is not in the manifest, or that is ambiguous (the message lists the choices)."""

    exit_code = 2


class ManifestError(SRError):
    """weights_manifest.json is malformed (a packaging bug, not a user error, but reported the same way)."""

    exit_code = 5


class CheckpointError(SRError):
    """A weights file that cannot be used."""

    exit_code = 5


class UnsupportedCheckpointError(CheckpointError):
    """Keys/shapes match no supported architecture ("closest match X, missing ..., unexpected ...")."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that asks to run code or import something outside the allow-list. Nothing was run."""


class ScaleMismatchError(CheckpointError):
    """The file's model serves other scales than the one asked for."""


class ModelOutputError(CheckpointError):
    """The network returned an output of another size than its scale promises (checkpoint and architecture
    disagree): nothing the options can fix."""


class DownloadError(SRError):
    """Every source for a file failed (the message lists each source and why)."""

    exit_code = 6


class ChecksumError(DownloadError):
    """A file's sha256 differs from the manifest; the file was not kept."""


class OfflineError(DownloadError):
    """A file is not in the cache and the network is off (HF_HUB_OFFLINE / SR_OFFLINE)."""


class DatasetError(SRError):
    """A dataset that cannot be found, downloaded or matched (e.g. HR/LR size mismatch)."""

    exit_code = 3


class DeviceError(SRError):
    """A device/precision combination that cannot run (fp16 on CPU, CUDA absent, ...)."""

    exit_code = 2


class TrainingError(SRError):
    """A training run that must stop (NaN/Inf loss, incompatible --resume), last good checkpoint kept."""

    exit_code = 7
