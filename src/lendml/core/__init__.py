"""Lowest layer: time, durations, configuration, ids. Imports no engine or web framework."""
