import core  # noqa: F401  (first: core.progress imports tqdm.auto quietly, before Pyro does)
