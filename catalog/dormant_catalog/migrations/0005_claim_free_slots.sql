-- The free replica slots in the order a pod claims them (slots no pod failed to start first, then by
-- service and index): a claim while slots are free (a pool starting, a deploy of many replicas) reads the
-- first few entries (``_CLAIM_FREE`` in pods.py) instead of sorting every claimable slot, which cost 20-50
-- ms per claim at 20,000 slots and made filling a pool quadratic in its size (measured by the catalog-scale
-- simulation, bench/catalog_scale.py). Lease renewals change none of these columns, so they stay HOT updates.
CREATE INDEX replica_slots_free ON replica_slots ((last_error IS NOT NULL), app_name, slot_index)
    WHERE pod_id IS NULL;
