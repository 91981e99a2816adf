-- Offsets belong to a topic incarnation (issue 13). A topic deleted and re-created under the same
-- name is a new log whose offsets start again at 0: an offset stored for the old one, applied to
-- the new one, skips its first records. Each stored offset now names the incarnation it counts in
-- (Kafka's topic id, KIP-516). NULL: stored before this migration; the next consumer to resume
-- it adopts the broker's current id (services/platform/offsets.py says what it checks).
ALTER TABLE kafka_offsets ADD COLUMN topic_id uuid;
COMMENT ON COLUMN kafka_offsets.topic_id IS
    'Kafka topic id of the incarnation next_offset counts in; NULL: stored before 0010';
