"""The SimpleDB store's host leases: when each host last reported, kept in the ``lease`` attribute of its heartbeat
item (``hosts``), written at most once per half lease, and read for every host in one paged Select."""

from __future__ import annotations

from server.liveness import renewal_due
from server.lru import LRU
from server.store.sdb import hosts
from server.store.sdb.client import quoted
from server.store.sdb.events import Events

#: The attributes of a heartbeat item that say when its host last reported (``hosts.renewal``).
RENEWAL_ATTRIBUTES = (hosts.BEAT, hosts.LEASE)


class Leases(Events):
    """Renewing a host's lease when a report names it, and every host's renewal."""

    #: When each host's lease was renewed, as this process last wrote or read it: a report inside the half lease
    #: after that costs no request.
    _renewals: LRU[str, str]

    def host_leases(self) -> dict[str, str]:
        """One consistent Select on the heartbeat items' names, for their ``beat`` and ``lease`` only (2,500
        hosts a page): the later of the two is when the host last reported."""
        self._ready_to_use()
        condition = f"itemName() like {quoted(hosts.PREFIX + '%')}"
        found = {}
        for name, attrs in self._select_items(condition, RENEWAL_ATTRIBUTES):
            key, renewed = hosts.key_of(name), hosts.renewal(attrs)
            if key and renewed:
                found[key] = renewed
        return found

    def _renewal_known(self, key: str, now: str) -> bool:
        """Whether this process knows that host ``key``'s lease needs no renewal at ``now``."""
        known = self._renewals.get(key)
        return known is not None and not renewal_due(known, now, self.lease)

    def _renew(self, key: str, now: str, stored: str | None = None) -> None:
        """Renew host ``key``'s lease at ``now`` when due: by what this process remembers (no request), else by
        the stored renewal (``stored``, when the caller has just read it; else one GetAttributes of two
        attributes). The write is one unconditional PutAttributes of the ``lease`` (and ``host``, so that the
        host's Select finds the item): two replicas renewing at once both land, a few seconds apart."""
        if not key or self._renewal_known(key, now):
            return
        if stored is None:
            stored = hosts.renewal(self._get("containers", hosts.item_name(key), RENEWAL_ATTRIBUTES))
        if stored and not renewal_due(stored, now, self.lease):
            self._renewals.put(key, stored)
            return
        self._put("containers", hosts.item_name(key), {hosts.HOST: key, hosts.LEASE: now})
        self._renewals.put(key, now)
