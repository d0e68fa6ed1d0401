"""What runs inside an instance: execute the cell, convert values (generated code imports this)."""
