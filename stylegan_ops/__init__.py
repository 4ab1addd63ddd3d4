"""StyleGAN2 building blocks for ganbrush: compiled ops, networks and checkpoint formats."""

from stylegan_ops.checkpoints import CheckpointError, generator_hash, load_generator, save_generator
from stylegan_ops.networks import Discriminator, Generator, GeneratorConfig

__all__ = ["CheckpointError", "Discriminator", "Generator", "GeneratorConfig", "generator_hash", "load_generator",
           "save_generator"]
