//! wa-queue against a real Redis (REDIS_URL, default `redis://127.0.0.1:6379`). Each test uses
//! its own queue name; tests that stop Redis start a private `redis-server` of their own.

mod cluster_node;
mod consumer;
mod contract_doc;
mod dead;
mod dedup;
mod fault;
mod lost;
mod ordered;
mod position;
mod producer;
mod shards;
mod support;
