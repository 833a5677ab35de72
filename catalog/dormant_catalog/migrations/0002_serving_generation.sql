-- The generation of its slot a pod has actually loaded and reported ready. A slot serves its target
-- only when serving_generation = generation: between a redeploy and the pod's switch it does not.
ALTER TABLE replica_slots ADD COLUMN serving_generation bigint;
