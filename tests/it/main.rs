//! Integration tests: one binary of modules. Everything here talks to a real Redis
//! (`REDIS_URL`, default `redis://127.0.0.1:6379`) and fails loudly when none answers.

mod browser;
mod pki;
mod support;

mod cluster;
mod custom_worker;
mod dashboard;
mod endpoint;
mod fault;
mod fixtures;
mod hostile;
mod https;
mod production_redis;
mod python_worker;
