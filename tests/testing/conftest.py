import sys
from pathlib import Path

# toolkit_tasks is imported by name, as a user's task module would be.
sys.path.insert(0, str(Path(__file__).parent))
