"""Analysis notebooks; ``python -m notebooks.run`` executes them and stores their outputs."""
