"""Feed adapters: one module per feed, each run as a scheduled job."""
