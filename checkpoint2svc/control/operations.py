"""What the API's routes do to the controller's desired state, as plain functions (the routes
only adapt HTTP to them; the unit tests call them without it). Each refusal is an error of its
own, which the API maps to an HTTP status in one table (``api.ERROR_STATUS``)."""

from __future__ import annotations

from dataclasses import replace

from checkpoint2svc.control.compat import incompatibility, node_signatures
from checkpoint2svc.control.controller import Controller
from checkpoint2svc.control.models import AliasSpec, InstanceRecord, NodeSpec, without_nodes
from checkpoint2svc.control.store import NodeRow
from checkpoint2svc.control.views import AliasCreate, AliasPatch, NodePatch
from checkpoint2svc.errors import Checkpoint2SvcError


class ConflictError(Checkpoint2SvcError):
    """The request conflicts with what exists (an alias uses the node; an incompatible node)."""


class InstanceNotFoundError(Checkpoint2SvcError):
    def __init__(self, node: str, instance: str) -> None:
        super().__init__(f"node {node} has no instance {instance!r}")


class LogRequestError(Checkpoint2SvcError):
    """Logs were asked for in a way that cannot be served (follow over several instances)."""


# --- nodes --------------------------------------------------------------------------------------
def list_nodes(controller: Controller) -> list[NodeRow]:
    return controller.store.nodes()


def get_node(controller: Controller, name: str) -> NodeRow:
    return controller.store.node(name)


def create_node(controller: Controller, spec: NodeSpec) -> NodeRow:
    row = controller.store.add_node(spec.validate())
    controller.event(spec.name, "node created")
    return row


def update_node(controller: Controller, name: str, patch: NodePatch) -> NodeRow:
    """Change a node's settings; a new checkpoint or image is built and rolled out. The changed
    settings are validated as a whole, read back from their JSON form too (``NodeSpec.validate``),
    so what is stored can always be read."""
    row = controller.store.node(name)
    spec = replace(patch.applied_to(row.spec), name=name).validate()
    rebuild = spec.checkpoint != row.spec.checkpoint or spec.image != row.spec.image
    controller.store.update_node(name, spec=spec, image="" if rebuild else None)
    if rebuild:
        controller.retire_image(row)
    controller.event(name, f"node updated: {', '.join(patch.changed()) or 'nothing'}")
    return controller.store.node(name)


def suspend_node(controller: Controller, name: str, suspended: bool) -> NodeRow:
    controller.store.update_node(name, suspended=suspended)
    controller.event(name, "suspend requested" if suspended else "resume requested")
    return controller.store.node(name)


def delete_node(controller: Controller, name: str, force: bool = False) -> None:
    """Mark the node for deletion (the reconcile loop stops its instances). An alias that uses
    it refuses, unless ``force``: then the node leaves the alias, its share going to the
    others in proportion; a node at 0 stays at 0, and when every node left is at 0 they share
    equally (``models.without_nodes``); an alias left with no node is deleted."""
    controller.store.node(name)
    using = [a for a in controller.store.aliases() if name in dict(a.nodes)]
    if using and not force:
        raise ConflictError(
            f"alias {', '.join(a.name for a in using)} still points at node {name}; update "
            "the alias first, or pass --force to take the node out of it (its share goes to "
            "the alias's other nodes)"
        )
    for alias in using:
        rest = without_nodes(alias.nodes, {name})
        if rest:
            controller.store.update_alias(replace(alias, nodes=rest))
        else:
            controller.store.remove_alias(alias.name)
    controller.store.update_node(name, deleting=True)
    controller.event(name, "delete requested")


def log_instances(
    controller: Controller, name: str, instance: str, follow: bool
) -> list[InstanceRecord]:
    """The instances whose logs ``node logs`` shows: ``instance``, or all (one to follow)."""
    controller.store.node(name)
    records = [r for r in controller.node_instances(name) if not instance or r.id == instance]
    if instance and not records:
        raise InstanceNotFoundError(name, instance)
    if follow and len(records) != 1:
        names = ", ".join(r.id for r in records) or "none"
        raise LogRequestError(
            f"--follow needs one instance: pass --instance (node {name} has {names})"
        )
    return records


# --- aliases ------------------------------------------------------------------------------------
def list_aliases(controller: Controller) -> list[AliasSpec]:
    return controller.store.aliases()


def get_alias(controller: Controller, name: str) -> AliasSpec:
    return controller.store.alias(name)


def checked_alias(
    controller: Controller, alias: AliasSpec, current: AliasSpec | None, allow_incompatible: bool
) -> AliasSpec:
    """``alias`` if it is valid, names existing nodes, and each of them is compatible with the
    node its clients know (the current alias's first node, else its own first node)."""
    alias.validate()
    for node, _ in alias.nodes:
        controller.store.node(node)  # raises naming an unknown node
    if allow_incompatible:
        return alias
    reference = (current or alias).nodes[0][0]
    others = [node for node, _ in alias.nodes if node != reference]
    specs = [controller.store.node(node).spec for node in (reference, *others)]
    base, *candidates = node_signatures(specs)
    for node, candidate in zip(others, candidates, strict=True):
        problem = incompatibility(
            f"node {node}", f"alias {alias.name}", reference, base, candidate,
            "pass --allow-incompatible to point the alias at it anyway",
        )  # fmt: skip
        if problem:
            raise ConflictError(problem)
    return alias


def create_alias(controller: Controller, body: AliasCreate) -> AliasSpec:
    alias = checked_alias(controller, body.spec(), None, body.allow_incompatible)
    controller.store.add_alias(alias)
    controller.apply_gateway()
    return alias


def update_alias(controller: Controller, name: str, patch: AliasPatch) -> AliasSpec:
    current = controller.store.alias(name)
    alias = checked_alias(controller, patch.applied_to(current), current, patch.allow_incompatible)
    controller.store.update_alias(alias)
    controller.apply_gateway()
    return alias


def delete_alias(controller: Controller, name: str) -> None:
    controller.store.remove_alias(name)
    controller.apply_gateway()
