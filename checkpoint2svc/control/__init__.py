"""The controller: desired state in SQLite, a reconcile loop over nodes and their instances, the
gateway it keeps in step, and the REST API that the CLI and the notebook magic call."""
