"""The main job (``make demo`` = ``python -m demo``): train every model family on the embedded data set,
evaluate and compare them."""
import core  # noqa: F401  (first: core.progress imports tqdm.auto quietly, before Pyro does)
