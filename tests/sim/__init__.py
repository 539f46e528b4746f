"""Tests of the simulator: its scenarios, its errors and the learning goals it measures."""
