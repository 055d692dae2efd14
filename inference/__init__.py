"""Training: objectives (our Trace_ELBO subclass, IWAE), the shared SVI trainer, command-line scripts."""
