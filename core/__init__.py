"""Infrastructure shared by every part of the project: errors, configs, run directories, devices."""

from core import progress  # noqa: F401  (first of all: tqdm.auto imported quietly, before any Pyro import)
