-- What a pod last said about its health (dormant_sidecar.observe): ready or not and why, its runtime
-- processes and their restarts per version; `dormant pods` and `dormant status` show it. Written when it
-- changes, so health_at is when it last changed (last_seen says whether the pod is still there).
ALTER TABLE pods ADD COLUMN health jsonb;
ALTER TABLE pods ADD COLUMN health_at timestamptz;
