"""``python -m server.flowlogs``."""

import sys

from server.flowlogs import main

if __name__ == "__main__":
    sys.exit(main())
