"""Measuring and tuning: metrics and eval runs, calibration, baseline scorers, plots, feedback."""
