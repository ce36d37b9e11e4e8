"""Offline trainers: they produce the adapters and weights the served methods load."""
