"""sr: super-resolution from the command line (EDSR, MDSR, ESRGAN/RRDB, VDSR)."""

__version__ = "0.1.0"
