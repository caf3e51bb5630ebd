"""``python -m ltlab train|run|sweep``: :func:`ltlab.launch.cli.main`."""
import sys

from ltlab.launch.notebook import skip_slow_optional_imports

skip_slow_optional_imports()
from ltlab.launch.cli import main  # noqa: E402

sys.exit(main())
