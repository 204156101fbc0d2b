"""EV charge point controller: the evse daemon and its pure station core."""
