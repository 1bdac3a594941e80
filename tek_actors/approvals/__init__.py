"""Approvals: the policy, and the ApprovalActor that asks a person before a tool runs."""

from tek_actors.approvals.actor import ApprovalActor

__all__ = ["ApprovalActor"]
