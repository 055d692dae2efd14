"""``python -m demo``: the main job (``demo.main_job``)."""
from core.errors import quiet_interrupts

if __name__ == "__main__":
    quiet_interrupts()  # Ctrl-C during the heavy imports below: one line, not a traceback

from core.errors import run_cli
from demo.main_job import main

run_cli(main)
