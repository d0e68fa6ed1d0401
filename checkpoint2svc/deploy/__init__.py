"""Stage 5: deploy — a checkpoint to a Healthy node behind an alias in one idempotent step,
through the controller's API (what ``checkpoint2svc deploy`` and ``%%deploy`` call)."""
