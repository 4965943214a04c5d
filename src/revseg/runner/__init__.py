"""The runner: the one facade commands and the Python API call."""

from revseg.runner.runner import Member, PreviewResult, Runner

__all__ = ["Member", "PreviewResult", "Runner"]
