"""clonusd: the acquisition daemon around the `dsp` detector."""

__version__ = "0.1.0"
