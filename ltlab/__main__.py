"""``python -m ltlab train|run|sweep``: :func:`ltlab.launch.cli.main`."""
import sys

from ltlab.launch.cli import main

sys.exit(main())
