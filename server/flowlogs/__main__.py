"""``python -m server.flowlogs``."""

import sys

from server.flowlogs import main

sys.exit(main())
