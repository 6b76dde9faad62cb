"""Readers of labelled time series and the Sentinel-2 parcel simulator."""
