"""Training objectives: our ``Trace_ELBO`` subclass, the IWAE bound, per-example importance log-weights,
and the GAN losses. They know models only as Pyro model/guide callables."""
