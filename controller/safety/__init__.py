"""The safety layer: the pilot, each EVSE's supervisor, and the control loop that alone drives contactors."""
