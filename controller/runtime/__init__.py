"""The station's runtime: the services and event sources the daemon shell wires together."""
