"""Which variables are a cell's inputs and outputs, and their types (in ``wire.type_ir``)."""
