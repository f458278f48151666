"""``python -m medcnn`` runs the CLI."""

import sys

from medcnn.cli import main

sys.exit(main())
