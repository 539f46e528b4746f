"""Tests of the failure memory package."""
