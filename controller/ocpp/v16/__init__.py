"""The OCPP 1.6J adapter and its configuration keys."""
