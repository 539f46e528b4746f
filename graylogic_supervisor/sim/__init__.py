"""Simulation: incidents drawn from a ground-truth scenario, run through the real engine."""
