//! Webhook certificates for development and tests: a CA and a serving certificate, generated with rcgen.
