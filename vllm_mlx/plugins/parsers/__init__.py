"""Generic parser implementations that family plugins register under their own names."""
