-- Whether a message id counts against the cap on ids kept (its caller could be anyone); an
-- id noted before this column existed does.
ALTER TABLE messages ADD COLUMN capped boolean NOT NULL DEFAULT true;
