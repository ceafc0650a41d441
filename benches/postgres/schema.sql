-- The comparison ledger: an append-only table whose trigger hash-chains each customer's
-- rows (the way AWS suggests replacing QLDB with plain PostgreSQL). Durable commits
-- (synchronous_commit = on, the default).
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE chain_heads (
    customer_id text PRIMARY KEY,
    head        bytea NOT NULL
);

CREATE TABLE consent_events (
    id          bigserial PRIMARY KEY,
    customer_id text        NOT NULL,
    subject_id  text        NOT NULL,
    payload     jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    prev_hash   bytea       NOT NULL,
    hash        bytea       NOT NULL
);
CREATE INDEX consent_events_subject ON consent_events (customer_id, subject_id, id);

CREATE FUNCTION chain_event() RETURNS trigger AS $$
DECLARE
    prev bytea;
BEGIN
    -- One writer per customer chain at a time.
    PERFORM pg_advisory_xact_lock(hashtext(NEW.customer_id));
    SELECT head INTO prev FROM chain_heads WHERE customer_id = NEW.customer_id;
    IF prev IS NULL THEN
        prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    END IF;
    NEW.prev_hash := prev;
    NEW.hash := digest(prev || convert_to(NEW.customer_id || NEW.subject_id || NEW.payload::text, 'UTF8'), 'sha256');
    INSERT INTO chain_heads (customer_id, head) VALUES (NEW.customer_id, NEW.hash)
        ON CONFLICT (customer_id) DO UPDATE SET head = EXCLUDED.head;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER chain_event BEFORE INSERT ON consent_events
    FOR EACH ROW EXECUTE FUNCTION chain_event();

-- No UPDATE or DELETE: append-only.
CREATE FUNCTION refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
