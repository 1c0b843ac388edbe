"""`python -m chatroom_async` is the `chatroom-async` command."""

import sys

from .cli import main

sys.exit(main())
