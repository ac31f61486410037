"""Entry point of the residency Pulumi project: ``pulumi up --stack de``."""

import sys
from pathlib import Path

# The components live next to this file; Pulumi runs the program with infra/ as cwd but
# not necessarily on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from residency_infra.program import run

run()
