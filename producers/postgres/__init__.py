"""PostgreSQL change-data capture: logical replication (``pgoutput``) into the producer's spool.

``setup`` (first start: publication, slot, snapshot as a full extract), ``source``
(the change stream), and the pure pieces they use: ``pgoutput`` (message
decoder), ``pgtypes`` (type mapping), ``catalog`` (table specs), ``relations``
(schema matching), ``changes`` and ``txn`` (events per transaction), ``lsn`` (seq).
"""
