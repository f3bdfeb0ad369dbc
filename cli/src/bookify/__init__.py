"""bookify."""
