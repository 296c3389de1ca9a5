"""Small helpers shared by every stage: errors, atomic file writes, logging, provenance."""
