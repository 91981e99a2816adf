-- Command status by id alone (`GET /v1/admin/commands/{command_id}`): a command the API
-- published is in `api_commands` (indexed by command_id since 0003); one published straight to
-- Kafka is known once the writer decided it, in `processed_commands`, whose key leads with
-- account_id. This index finds it without the account.
CREATE INDEX processed_commands_by_id ON processed_commands (command_id);
