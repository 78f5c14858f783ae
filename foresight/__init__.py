"""Foresight: track, forecast and steer the circuits of LLMs during fine-tuning."""

__version__ = "0.1.0"
