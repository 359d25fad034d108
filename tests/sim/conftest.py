import sys
from pathlib import Path

# The sim tests share the test top in frame_top.py; with --import-mode=importlib the test
# folder is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))
