-- Lease renewals are the catalog's steadiest write: every serving pod renews its slot every lease/3 (3.3 s
-- by default), i.e. 0.3 updates/s per replica slot, 6,000/s at 20,000 slots. An UPDATE that changes an
-- indexed column cannot be a HOT update: it writes a new entry into every index of the table and leaves
-- dead ones for VACUUM. replica_slots_claimable indexed lease_expires_at, which every renewal sets, and no
-- query used it (the claim reaches slots through application_catalog and (app_name, slot_index); the
-- catalog-scale simulation counted 0 scans of it). Without it renewals update the row in place on its page
-- (measured: 0 % -> 99 % HOT updates, and the table's indexes stopped growing).
DROP INDEX IF EXISTS replica_slots_claimable;
