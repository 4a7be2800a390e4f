"""Figures, read only from a run summary or a collected table (never from live objects)."""
