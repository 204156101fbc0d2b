"""``python -m hil.csms``: the development CSMS in the foreground (see ``hil.csms.cli``)."""

import sys

from hil.csms import stopping


def _run() -> int:
    # Signals are handled from here on, through the CSMS's imports (slow on a loaded machine).
    with stopping.handled() as shutdown:
        from hil.csms.cli import main

        if shutdown.signalled is not None:  # during the imports: nothing started yet
            return 0
        return main()


sys.exit(_run())
