"""Readers and writers for generator checkpoint formats (ganbrush, rosinality, NVIDIA)."""
