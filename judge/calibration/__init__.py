"""Calibration of judges against human ratings."""
