"""Simulated departmental systems (synthetic data, labelled so) and the writers that put their
changes into real sources for the demo."""
