"""Make tests/ importable so every test can use the batch reference (tests/reference.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
