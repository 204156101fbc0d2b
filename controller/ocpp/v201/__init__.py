"""The OCPP 2.0.1 adapter, its device model, transactions and monitoring."""
