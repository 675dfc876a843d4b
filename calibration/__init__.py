"""Calibration: INT8 preparation and exit-threshold search (mesc calibrate)."""
