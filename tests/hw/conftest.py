import sys
from pathlib import Path

# The hw tests share helpers in hwsim.py; with --import-mode=importlib the test folder is not
# on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))
