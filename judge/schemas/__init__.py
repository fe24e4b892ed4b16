"""JSON Schemas shipped with judge."""
