"""Prints the README.md command that follows the marker ``<!-- ci:NAME -->`` (setup, test, ...).

CI runs exactly what the README tells a newcomer to run, so the two cannot drift apart.
"""

import re
import sys
from pathlib import Path

name = sys.argv[1]
readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
match = re.search(rf"<!-- ci:{re.escape(name)} -->\s*```(?:bash|sh)?\n(.*?)```", readme, re.S)
if match is None:
    sys.exit(f"README.md has no command block after <!-- ci:{name} -->")
print(match.group(1).strip())
