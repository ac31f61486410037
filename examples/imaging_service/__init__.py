"""An imaging-AI vendor's upload service built on residency-sdk (example)."""
