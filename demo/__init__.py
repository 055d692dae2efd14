"""The main job (``make demo`` = ``python -m demo``): train every model family on the embedded data set,
evaluate and compare them."""
