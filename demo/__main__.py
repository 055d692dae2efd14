"""``python -m demo``: the main job (``demo.main_job``)."""
from core.errors import run_cli
from demo.main_job import main

run_cli(main)
