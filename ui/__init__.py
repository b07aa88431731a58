"""The operator panel (NiceGUI). It reads projections from PostgreSQL and sends commands to the actors."""
