"""nerve: few-shot, cross-domain named entity recognition as a service."""

__version__ = "0.1.0"
