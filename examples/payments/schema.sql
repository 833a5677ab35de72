-- The table the payments example writes through ctx.transaction(). It lives in the mesh's catalog
-- database (DORMANT_CATALOG_URL), the database whose transaction commits with each call's answer.
CREATE TABLE IF NOT EXISTS charges (
    charge_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   text        NOT NULL,
    cents      integer     NOT NULL CHECK (cents > 0),
    call_id    text        NOT NULL,
    charged_at timestamptz NOT NULL DEFAULT now()
);
