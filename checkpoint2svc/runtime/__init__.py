"""What runs inside an instance: load the checkpoint, serve the cell over REST and gRPC, health,
metrics (generated code imports this). Running the cell is ``execution``'s; values on the wire
are ``wire``'s."""
