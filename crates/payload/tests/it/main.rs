//! Tests of wa-payload: shared fixtures, our own real-shaped bodies, large batches, raw slices,
//! odd shapes and arbitrary input.

#[path = "../common/batch.rs"]
mod batch;

mod batches;
mod data;
mod fixtures;
mod props;
mod support;
