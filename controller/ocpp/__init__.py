"""OCPP: framing and validation, the shared adapter, and one adapter per version."""
