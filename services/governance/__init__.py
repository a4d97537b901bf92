"""Governance: MOUs become topics, SCRAM users and ACLs on the cluster; the signed registry.

The decisions are pure and live in :mod:`services.core.access` (what each principal is
granted and why), :mod:`services.core.governance_plan` (desired vs live vs ledger, with
:mod:`~services.core.acl_scope`, :mod:`~services.core.acl_ledger` and :mod:`~services.core.draining`) and
:mod:`services.core.registry` (registry records and snapshots). This package is the
I/O around them, as ``concord-admin``:

``admin``     confluent-kafka AdminClient calls: ACLs, SCRAM users, topics and configs
``acl``       plan / apply (``concord acl plan|apply``)
``drift``     drift reports and their Prometheus gauges (``concord acl drift``)
``drain``     whether an agency has drained its directive topic (its receipts)
``ledger``    what Concord applied last, on the compacted ``<ns>.governance-ledger``
``reading``   reading a topic to its end by assignment
``registry``  publishing and following the signed ``<ns>.registry``
``commands``  the CLI commands
"""
