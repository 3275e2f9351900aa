CREATE TABLE incidents (
    tenant_id   text        NOT NULL,
    id          uuid        NOT NULL,
    title       text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description text        NOT NULL,
    impact      smallint    NOT NULL CHECK (impact BETWEEN 1 AND 3),
    urgency     smallint    NOT NULL CHECK (urgency BETWEEN 1 AND 3),
    priority    smallint    NOT NULL CHECK (priority BETWEEN 1 AND 5),
    state       text        NOT NULL,
    version     integer     NOT NULL,
    created_at  timestamptz NOT NULL,
    created_by  text        NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX incidents_id ON incidents (id);
