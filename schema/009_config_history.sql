-- Config history (issue 12): every change to the watchlist (a wallet added, removed, paused, relabelled, its copy
-- rules) or to a runtime setting (the global trading mode) lands here as a JSON snapshot of the whole configuration
-- after it, with who made it, what changed and when. Triggers record it, so no writer can forget one (the CLI, the
-- panel, `walltrack config import`, psql alike). A writer names itself with `SET LOCAL walltrack.actor = '...'`,
-- else its connection's application_name (the CLI's is `cli:<user>`) is taken. One transaction is one row.
-- `kind = 'settings'` rows hold the environment's settings (secrets only as "set"), recorded by `walltrack run` at
-- start when they differ from the last recorded ones. `walltrack config export [--at ID]` reads them back.
CREATE TABLE config_history (
    id        bigserial PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('config', 'settings')),
    at        timestamptz NOT NULL DEFAULT now(),
    xact      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    by        text NOT NULL,
    changes   jsonb NOT NULL DEFAULT '[]'::jsonb,  -- [{"table", "op", "key", "fields"}], in the order made
    snapshot  jsonb NOT NULL
);
CREATE UNIQUE INDEX config_history_xact ON config_history (kind, xact, at);
CREATE INDEX config_history_latest ON config_history (kind, id DESC);

-- The configuration the database holds, as one JSON document (what `walltrack config export` prints beside the settings).
CREATE FUNCTION walltrack_config_snapshot() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'runtime_settings', coalesce((SELECT jsonb_object_agg(key, value ORDER BY key) FROM runtime_settings), '{}'::jsonb),
        'wallets', coalesce((SELECT jsonb_agg(jsonb_build_object('address', address, 'label', label, 'status', status,
                                                                 'settings', settings) ORDER BY address)
                               FROM wallets), '[]'::jsonb))
$$;

CREATE FUNCTION walltrack_config_actor(fallback text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('walltrack.actor', true), ''),
                    nullif(current_setting('application_name', true), ''), fallback, session_user::text)
$$;

-- Per row: append what changed to this transaction's history row (skipping updates that changed nothing).
CREATE FUNCTION walltrack_config_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_row jsonb := CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE to_jsonb(NEW) END;
    old_row jsonb := CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE to_jsonb(OLD) END;
    rec     jsonb := coalesce(new_row, old_row);
    fields  jsonb := '[]'::jsonb;
    change  jsonb;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT coalesce(jsonb_agg(n.key ORDER BY n.key), '[]'::jsonb) INTO fields
          FROM jsonb_each(new_row) n JOIN jsonb_each(old_row) o USING (key)
         WHERE n.value IS DISTINCT FROM o.value AND n.key NOT IN ('updated_at', 'updated_by');
        IF fields = '[]'::jsonb THEN
            RETURN NULL;
        END IF;
    END IF;
    change := jsonb_build_object('table', TG_TABLE_NAME, 'op', lower(TG_OP),
                                 'key', CASE TG_TABLE_NAME WHEN 'wallets' THEN rec->>'address' ELSE rec->>'key' END);
    IF TG_OP = 'UPDATE' THEN
        change := change || jsonb_build_object('fields', fields);
    END IF;
    INSERT INTO config_history (kind, by, changes, snapshot)
    VALUES ('config', walltrack_config_actor(CASE WHEN TG_TABLE_NAME = 'runtime_settings' THEN new_row->>'updated_by' END),
            jsonb_build_array(change), '{}'::jsonb)
    ON CONFLICT (kind, xact, at) DO UPDATE SET changes = config_history.changes || EXCLUDED.changes;
    RETURN NULL;
END $$;

-- Per statement: the snapshot of this transaction's row is the configuration after its latest statement.
CREATE FUNCTION walltrack_config_statement_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_history SET snapshot = walltrack_config_snapshot()
     WHERE kind = 'config' AND xact = pg_current_xact_id_if_assigned() AND at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER wallets_config_row AFTER INSERT OR UPDATE OR DELETE ON wallets
    FOR EACH ROW EXECUTE FUNCTION walltrack_config_row_changed();
CREATE TRIGGER wallets_config_statement AFTER INSERT OR UPDATE OR DELETE ON wallets
    FOR EACH STATEMENT EXECUTE FUNCTION walltrack_config_statement_done();
CREATE TRIGGER runtime_settings_config_row AFTER INSERT OR UPDATE OR DELETE ON runtime_settings
    FOR EACH ROW EXECUTE FUNCTION walltrack_config_row_changed();
CREATE TRIGGER runtime_settings_config_statement AFTER INSERT OR UPDATE OR DELETE ON runtime_settings
    FOR EACH STATEMENT EXECUTE FUNCTION walltrack_config_statement_done();
