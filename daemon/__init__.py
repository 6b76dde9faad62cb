"""The daemon: consumer, state, store, bus, scheduler, API and metrics."""
