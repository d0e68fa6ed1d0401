"""Stage 3: type IR -> .proto, JSON Schema / OpenAPI; render templates; compile protos."""
