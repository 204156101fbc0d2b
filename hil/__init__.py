"""Hardware-in-the-loop rig: drive the EV side, RFID and faults on simulation or a bench."""
