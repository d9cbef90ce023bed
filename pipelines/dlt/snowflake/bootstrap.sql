-- One-time Snowflake setup for the chess pipeline (pipelines/snowflake.md).
--
-- Creates what the pipeline's preflight checks and its loads use: a database, a warehouse,
-- the role CHESS_LOADER with USAGE on both and CREATE SCHEMA on the database (dlt creates
-- and then owns the schemas CHESS and CHESS_STAGING, their tables, table stages and views),
-- and a service user (TYPE = SERVICE: no password, key-pair login) whose defaults are that
-- role and warehouse. Names match the Kestra flow's variables (pipelines/chess-kestra-dlt.yml:
-- snowflake_database, snowflake_warehouse, snowflake_role); the user is the flow's secret
-- SNOWFLAKE_USERNAME. Change them together.
--
-- Before running: replace <RSA_PUBLIC_KEY> with your public key, the base64 lines between
-- -----BEGIN PUBLIC KEY----- and -----END PUBLIC KEY----- of rsa_key.pub (pipelines/snowflake.md shows how
-- to make the pair). Run as a user holding SYSADMIN and USERADMIN/SECURITYADMIN (e.g.
-- ACCOUNTADMIN). Re-running is safe (IF NOT EXISTS; GRANT is idempotent).
--
-- Proven on the emulator (tests/e2e/test_snowflake_emulator.py runs this file, then the
-- pipeline as CHESS_LOADER_SVC); only a real account proves Snowflake's own checks of it.

USE ROLE SYSADMIN;
CREATE DATABASE IF NOT EXISTS RAW;
CREATE WAREHOUSE IF NOT EXISTS LOADING_WH
  WAREHOUSE_SIZE = XSMALL AUTO_SUSPEND = 60 AUTO_RESUME = TRUE INITIALLY_SUSPENDED = TRUE;

USE ROLE USERADMIN;
CREATE ROLE IF NOT EXISTS CHESS_LOADER;
CREATE USER IF NOT EXISTS CHESS_LOADER_SVC
  TYPE = SERVICE
  DEFAULT_ROLE = CHESS_LOADER
  DEFAULT_WAREHOUSE = LOADING_WH
  RSA_PUBLIC_KEY = '<RSA_PUBLIC_KEY>'
  COMMENT = 'chess pipeline (Kestra flow chess-kestra-dlt): key-pair login only';

USE ROLE SECURITYADMIN;
GRANT ROLE CHESS_LOADER TO USER CHESS_LOADER_SVC;
-- SYSADMIN sees (and can manage) what the pipeline's role creates.
GRANT ROLE CHESS_LOADER TO ROLE SYSADMIN;
GRANT USAGE ON WAREHOUSE LOADING_WH TO ROLE CHESS_LOADER;
GRANT USAGE ON DATABASE RAW TO ROLE CHESS_LOADER;
GRANT CREATE SCHEMA ON DATABASE RAW TO ROLE CHESS_LOADER;

-- Key rotation, later: set the new key in the second slot, move the flow's secret to the new
-- private key, then drop the old one (https://docs.snowflake.com/en/user-guide/key-pair-auth):
--   ALTER USER CHESS_LOADER_SVC SET RSA_PUBLIC_KEY_2 = '<new public key>';
--   ALTER USER CHESS_LOADER_SVC UNSET RSA_PUBLIC_KEY;
--
-- Readers (not run by the emulator; run once the first load has created the schema).
-- Grants on the views survive the pipeline's CREATE OR REPLACE VIEW ... COPY GRANTS:
--   CREATE ROLE IF NOT EXISTS CHESS_READER;
--   GRANT USAGE ON DATABASE RAW TO ROLE CHESS_READER;
--   GRANT USAGE ON SCHEMA RAW.CHESS TO ROLE CHESS_READER;
--   GRANT SELECT ON ALL TABLES IN SCHEMA RAW.CHESS TO ROLE CHESS_READER;
--   GRANT SELECT ON ALL VIEWS IN SCHEMA RAW.CHESS TO ROLE CHESS_READER;
--   GRANT SELECT ON FUTURE TABLES IN SCHEMA RAW.CHESS TO ROLE CHESS_READER;
