"""``python -m ltlab train|run|sweep``: :func:`ltlab.launch.cli.main`."""
import sys

from ltlab.viz.deferred import defer_rfc3987_syntax

defer_rfc3987_syntax()  # papermill's nbformat -> jsonschema would build rfc3987_syntax's parser (about 1 s)
from ltlab.launch.cli import main  # noqa: E402

sys.exit(main())
