"""Hardware drivers behind small interfaces, each with a simulated twin."""
