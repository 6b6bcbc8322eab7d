-- textrec schema version 0004 for postgresql.
-- Generated from the models in textrec/store.py: `python -m textrec.store.schema sqlite|postgresql`.

CREATE TABLE df_snapshots (
	id VARCHAR(64) NOT NULL, 
	n_docs BIGINT NOT NULL, 
	n_terms BIGINT NOT NULL, 
	scheme VARCHAR(64) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	data BYTEA NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE documents (
	id BIGSERIAL NOT NULL, 
	external_id VARCHAR(512) NOT NULL, 
	title TEXT, 
	text TEXT NOT NULL, 
	meta TEXT NOT NULL, 
	terms TEXT, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	content_hash VARCHAR(64), 
	PRIMARY KEY (id), 
	UNIQUE (external_id)
);
CREATE INDEX ix_documents_content_hash ON documents (content_hash);

CREATE TABLE textrec_meta (
	key VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (key)
);

CREATE TABLE textrec_state (
	id SERIAL NOT NULL, 
	identity VARCHAR(32) NOT NULL, 
	generation BIGINT NOT NULL, 
	write_tag VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE events (
	id BIGSERIAL NOT NULL, 
	user_id VARCHAR(256) NOT NULL, 
	document_id BIGINT NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	source VARCHAR(32), 
	time TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(document_id) REFERENCES documents (id) ON DELETE CASCADE
);
CREATE INDEX ix_events_document_id ON events (document_id);
CREATE INDEX ix_events_user_id ON events (user_id);

CREATE TABLE fingerprints (
	snapshot_id VARCHAR(64) NOT NULL, 
	document_id BIGINT NOT NULL, 
	scheme VARCHAR(64) NOT NULL, 
	fp BIGINT NOT NULL, 
	PRIMARY KEY (snapshot_id, document_id), 
	FOREIGN KEY(snapshot_id) REFERENCES df_snapshots (id) ON DELETE CASCADE, 
	FOREIGN KEY(document_id) REFERENCES documents (id) ON DELETE CASCADE
);
CREATE INDEX ix_fingerprints_document_id ON fingerprints (document_id);

-- The schema revision, so that textrec and `textrec migrate` recognise it.
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version (version_num) VALUES ('0004');
