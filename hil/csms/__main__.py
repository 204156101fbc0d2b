"""``python -m hil.csms``: the development CSMS in the foreground (see ``hil.csms.cli``)."""

import sys

from hil.csms.cli import main

sys.exit(main())
