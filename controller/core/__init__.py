"""The station core: sessions, authorization, transactions and charging limits, free of I/O."""
