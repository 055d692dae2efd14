"""The GAN: generator and discriminator networks (``networks``) and the Pyro story (``model``)."""
from models.gan.model import GAN, GANConfig, build_gan

__all__ = ["GAN", "GANConfig", "build_gan"]
