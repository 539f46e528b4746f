"""Workflow learning: metrics from every execution, analysis, recommendations, versions."""
