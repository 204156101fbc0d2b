"""OCPP security: certificates, TLS, credentials and security events."""
