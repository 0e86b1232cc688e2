"""Would define export_csv; never loaded by a worker, since its app is not installed."""
