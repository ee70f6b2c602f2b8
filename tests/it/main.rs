//! Integration tests: the ingress over a real socket, real Redis.
