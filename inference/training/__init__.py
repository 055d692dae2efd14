"""Trainers (SVI and adversarial) on one epoch loop, their options, figures, distributed and mixed-precision
support, and ``load_run`` (a trained run rebuilt from its directory, without the trainers)."""
