-- One database per tier, each stamped with its tier (the same stamp dbguard.guard.stamp writes).
CREATE DATABASE app_int;
CREATE DATABASE app_stg;

\connect app_int
CREATE SCHEMA dbguard;
CREATE TABLE dbguard.tier_stamp (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    tier text NOT NULL CHECK (tier IN ('int', 'stg', 'prod')),
    database_name text NOT NULL,
    stamped_at timestamptz NOT NULL DEFAULT now(),
    stamped_by text NOT NULL
);
INSERT INTO dbguard.tier_stamp (tier, database_name, stamped_by) VALUES ('int', 'app_int', 'docker initdb');

\connect app_stg
CREATE SCHEMA dbguard;
CREATE TABLE dbguard.tier_stamp (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    tier text NOT NULL CHECK (tier IN ('int', 'stg', 'prod')),
    database_name text NOT NULL,
    stamped_at timestamptz NOT NULL DEFAULT now(),
    stamped_by text NOT NULL
);
INSERT INTO dbguard.tier_stamp (tier, database_name, stamped_by) VALUES ('stg', 'app_stg', 'docker initdb');
