"""Policy decisions remembered per principal: the same token asks many times a minute, and
deciding (parsing its scopes, combining its roles) is pure given the principal, the request's
break-the-glass state and the policy, which is fixed for a server's lifetime."""

from __future__ import annotations

from cachetools import LRUCache

from app.auth.policy import Access, Policy
from app.auth.principal import Principal


class Decisions:
    def __init__(self, policy: Policy, max_entries: int = 4096) -> None:
        self.policy = policy
        self._access: LRUCache[tuple[Principal, bool], Access] = LRUCache(max_entries)

    def decide(self, principal: Principal, *, break_glass: bool = False) -> Access:
        """`Policy.decide`; raises PurposeRefused (never remembered) as it does."""
        key = (principal, break_glass)
        access = self._access.get(key)
        if access is None:
            access = self._access[key] = self.policy.decide(principal, break_glass=break_glass)
        return access
