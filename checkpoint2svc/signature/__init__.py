"""Which variables are a cell's inputs and outputs, and their types (the type IR)."""
