"""Applying a proposal list to the public state (RFC 9420 §12.3).

Owns: `AppliedProposals` (the effect of a list on a copy of the tree and the GroupContext
extensions: who was added, removed, updated; PSKs, ExternalInit, ReInit) and `apply_proposals`,
which dispatches through a table keyed by ProposalType in the order §12.3 prescribes
(GroupContextExtensions, Updates, Removes, Adds, then the rest). Validation is the caller's
(`PublicGroup.validate_proposal_list`, §12.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from doorless.mls.extensions import Extension
from doorless.mls.framing import Sender, SenderMember
from doorless.mls.key_package import KeyPackage
from doorless.mls.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalType,
    ReInit,
    Remove,
    Update,
)
from doorless.mls.ratchet_tree import RatchetTree
from doorless.mls.tree_math import LeafIndex
from doorless.mls.types import Member, member_at


@dataclass(slots=True)
class AppliedProposals:
    """The effect of a proposal list on a copy of the tree and the GroupContext extensions."""

    tree: RatchetTree
    extensions: tuple[Extension, ...]
    added: list[tuple[LeafIndex, KeyPackage]]
    removed: list[Member]
    updated: list[LeafIndex]
    psk_ids: list[PreSharedKeyID]
    external_init: ExternalInit | None
    reinit: ReInit | None
    types: set[int]


def _apply_extensions(a: AppliedProposals, p: Proposal, _: Sender) -> None:
    assert isinstance(p, GroupContextExtensions)
    a.extensions = p.extensions


def _apply_update(a: AppliedProposals, p: Proposal, sender: Sender) -> None:
    assert isinstance(p, Update) and isinstance(sender, SenderMember)
    a.tree.update_leaf(sender.leaf_index, p.leaf_node)
    a.updated.append(LeafIndex(sender.leaf_index))


def _apply_remove(a: AppliedProposals, p: Proposal, _: Sender) -> None:
    assert isinstance(p, Remove)
    a.removed.append(member_at(a.tree, p.removed))
    a.tree.remove_leaf(p.removed)


def _apply_add(a: AppliedProposals, p: Proposal, _: Sender) -> None:
    assert isinstance(p, Add)
    a.added.append((a.tree.add_leaf(p.key_package.leaf_node), p.key_package))


def _apply_psk(a: AppliedProposals, p: Proposal, _: Sender) -> None:
    assert isinstance(p, PreSharedKey)
    a.psk_ids.append(p.psk)


def _apply_external_init(a: AppliedProposals, p: Proposal, _: Sender) -> None:
    assert isinstance(p, ExternalInit)
    a.external_init = p


def _apply_reinit(a: AppliedProposals, p: Proposal, _: Sender) -> None:
    assert isinstance(p, ReInit)
    a.reinit = p


_Applier = Callable[[AppliedProposals, Proposal, Sender], None]
# §12.3: (stage, handler). Stages run in order (GroupContextExtensions, Updates, Removes, Adds,
# then the rest); within a stage, proposals keep their order in the list.
_APPLY: dict[ProposalType, tuple[int, _Applier]] = {
    ProposalType.group_context_extensions: (0, _apply_extensions),
    ProposalType.update: (1, _apply_update),
    ProposalType.remove: (2, _apply_remove),
    ProposalType.add: (3, _apply_add),
    ProposalType.psk: (4, _apply_psk),
    ProposalType.external_init: (4, _apply_external_init),
    ProposalType.reinit: (4, _apply_reinit),
}
_STAGES = 5
_CHANGES_TREE = frozenset({ProposalType.update, ProposalType.remove, ProposalType.add})


def apply_proposals(
    tree: RatchetTree,
    extensions: tuple[Extension, ...],
    proposals: Sequence[tuple[Proposal, Sender]],
) -> AppliedProposals:
    """Apply in the order of §12.3. Works on a copy of ``tree`` if a proposal changes it;
    otherwise ``applied.tree`` *is* ``tree`` (copy it before changing it): a copy touches
    all n nodes, which a self-update of a large group should not pay."""
    stages: list[list[tuple[_Applier, Proposal, Sender]]] = [[] for _ in range(_STAGES)]
    changes_tree = False
    types: set[int] = set()
    for proposal, sender in proposals:
        kind = proposal.proposal_type
        types.add(int(kind))
        changes_tree = changes_tree or kind in _CHANGES_TREE
        stage, handler = _APPLY[kind]
        stages[stage].append((handler, proposal, sender))
    new_tree = tree.copy() if changes_tree else tree
    applied = AppliedProposals(new_tree, extensions, [], [], [], [], None, None, types)
    for stage_items in stages:
        for handler, proposal, sender in stage_items:
            handler(applied, proposal, sender)
    return applied
