"""graylogic-supervisor: the third level of recovery for a building controller."""

__version__ = "0.1.0"
