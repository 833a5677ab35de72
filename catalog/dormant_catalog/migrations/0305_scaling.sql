-- Autoscaling settings of a function (minInstances, maxInstances, targetConcurrency, cooldowns,
-- schedules), validated by dormant_catalog.scaling; NULL: the controller does not autoscale it.
ALTER TABLE gateway_functions ADD COLUMN scaling jsonb;
